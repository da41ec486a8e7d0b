//! The typed readers of the read stage: each checks one JSON value's shape (an object with
//! known keys, a string, an array, one of a few names, a whole number) and records a problem
//! when it is not what the language wants there.

use serde_json::{Map, Value};

use super::super::suggest::did_you_mean;
use super::messages::{list, out_of_range, range, wrong_type};
use super::{DiagnosticKind, Problem, Skip};
use crate::json::pointer::join;

/// The read stage's state: the problems found and what the compile stage is to skip.
#[derive(Default)]
pub(super) struct Reader {
    pub(super) problems: Vec<Problem>,
    pub(super) skip: Skip,
}

impl Reader {
    pub(super) fn problem(&mut self, pointer: impl Into<String>, kind: DiagnosticKind, m: String) {
        self.problems.push(Problem::new(pointer, kind, m));
    }

    pub(super) fn wrong_type(&mut self, ptr: &str, expected: &str, v: &Value) {
        self.problems.push(wrong_type(ptr, expected, v));
    }

    /// Records that the piece at `ptr` is a stand-in the compile stage must skip.
    pub(super) fn stand_in(&mut self, ptr: &str) {
        self.skip.pieces.insert(ptr.to_owned());
    }

    /// Checks that `v` is an object with only `allowed` keys and all `required` ones.
    /// The object is taken apart by the reader (values moved out into the model, not copied).
    pub(super) fn object(
        &mut self,
        v: Value,
        ptr: &str,
        what: &str,
        allowed: &[&str],
        required: &[&str],
    ) -> Option<Map<String, Value>> {
        let map = match v {
            Value::Object(map) => map,
            v => {
                self.wrong_type(ptr, &format!("{what} (a JSON object)"), &v);
                return None;
            }
        };
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                let hint = did_you_mean(key, allowed)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("; {what} takes {}", list(allowed)));
                self.problems.push(Problem::at_key(
                    join(ptr, key),
                    DiagnosticKind::UnknownKey,
                    format!("unknown key `{key}` in {what}{hint}"),
                ));
            }
        }
        for key in required {
            if !map.contains_key(*key) {
                self.problem(
                    ptr,
                    DiagnosticKind::MissingKey,
                    format!("missing required key `{key}` in {what}"),
                );
            }
        }
        Some(map)
    }

    pub(super) fn string(&mut self, v: Value, ptr: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s),
            v => {
                self.wrong_type(ptr, "a string", &v);
                None
            }
        }
    }

    /// The string at `map[key]`: `Ok(None)` when absent, `Err` when not a string.
    pub(super) fn opt_string(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        ptr: &str,
    ) -> Result<Option<String>, ()> {
        match map.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => self.string(v, &join(ptr, key)).map(Some).ok_or(()),
        }
    }

    pub(super) fn array(&mut self, v: Value, ptr: &str, what: &str) -> Option<Vec<Value>> {
        match v {
            Value::Array(items) => Some(items),
            v => {
                self.wrong_type(ptr, &format!("an array of {what}"), &v);
                None
            }
        }
    }

    /// The string at `map[key]` (`None` when absent or reported: not a string).
    pub(super) fn string_at(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        ptr: &str,
    ) -> Option<String> {
        match map.remove(key)? {
            Value::String(s) => Some(s),
            v => self.string(v, &join(ptr, key)),
        }
    }

    /// The whole number at `map[key]` (see [`integer`](Reader::integer)).
    pub(super) fn integer_at(
        &mut self,
        map: &Map<String, Value>,
        key: &str,
        ptr: &str,
        what: &str,
        (min, max): (u64, u64),
    ) -> Option<u64> {
        match map.get(key)? {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            v => self.integer(v, &join(ptr, key), what, min, max),
        }
    }

    /// One of `choices`, written as a string.
    pub(super) fn choice<'c>(
        &mut self,
        v: &Value,
        ptr: &str,
        what: &str,
        choices: &[&'c str],
    ) -> Option<&'c str> {
        let s = match v {
            Value::String(s) => s,
            _ => {
                let expected = format!(
                    "{what}: one of {}",
                    choices.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ")
                );
                self.wrong_type(ptr, &expected, v);
                return None;
            }
        };
        if let Some(c) = choices.iter().find(|c| **c == s.as_str()) {
            return Some(c);
        }
        let hint =
            did_you_mean(s, choices).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default();
        self.problem(
            ptr,
            DiagnosticKind::InvalidValue,
            format!("unknown {what} `{s}`: expected one of {}{hint}", list(choices)),
        );
        None
    }

    /// A whole number written as one (its range, `min..=max`, is the compile stage's to check;
    /// it is named here in the messages).
    pub(super) fn integer(
        &mut self,
        v: &Value,
        ptr: &str,
        what: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        match v {
            Value::Number(n) => match n.as_u64() {
                Some(x) => Some(x),
                None => {
                    let why = if n.is_f64() {
                        "a fractional number".to_owned()
                    } else {
                        format!("`{n}`")
                    };
                    self.problems.push(out_of_range(ptr, what, min, max, &why));
                    None
                }
            },
            _ => {
                self.wrong_type(
                    ptr,
                    &format!("{what}: a whole number from {}", range(min, max)),
                    v,
                );
                None
            }
        }
    }
}
