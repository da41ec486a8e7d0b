//! The words of the loader's messages that both stages use: the language's keys and choices,
//! type names, ranges, and what a bad window or `arguments` schema means.

use serde_json::Value;

use super::super::model::{MAX_LIMIT, MAX_WINDOW_SECONDS};
use super::super::suggest::did_you_mean;
use super::{DiagnosticKind, Problem};
use crate::json::pointer::join;

pub(super) const DOCUMENT_KEYS: &[&str] =
    &["$schema", "version", "default", "description", "hide", "all_tools", "tools"];
pub(super) const RULE_KEYS: &[&str] =
    &["description", "arguments", "require", "deny_if", "approve_if", "limits"];
pub(super) const CHECK_KEYS: &[&str] = &["name", "conditions", "on_deny"];
pub(super) const APPROVAL_KEYS: &[&str] = &["name", "conditions", "reason"];
pub(super) const CONDITION_KEYS: &[&str] = &["path", "op", "value"];
pub(super) const LIMIT_KEYS: &[&str] =
    &["counter", "window", "max", "scope", "increment", "increment_from", "sliding"];
pub(super) const OPS: &[&str] = &[
    "eq",
    "neq",
    "in",
    "not_in",
    "lt",
    "lte",
    "gt",
    "gte",
    "contains",
    "starts_with",
    "ends_with",
    "regex",
    "exists",
    "within",
];
pub(super) const WINDOWS: &[&str] = &["second", "minute", "hour", "day"];
pub(super) const SCOPES: &[&str] = &["grant", "session", "global"];

/// The JSON Schema type names, for `"type"` in an `arguments` schema.
const SCHEMA_TYPES: &[&str] =
    &["array", "boolean", "integer", "null", "number", "object", "string"];

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short rendering of a value for messages.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        let cut: String = s.chars().take(37).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// `v` is not of the JSON type the language wants at `ptr`.
pub(super) fn wrong_type(ptr: &str, expected: &str, v: &Value) -> Problem {
    Problem::new(
        ptr,
        DiagnosticKind::WrongType,
        format!("expected {expected}, found {} `{}`", type_name(v), show(v)),
    )
}

/// `min` to `max` in words (2^53 for [`MAX_LIMIT`]).
pub(super) fn range(min: u64, max: u64) -> String {
    if max == MAX_LIMIT { format!("{min} to 2^53") } else { format!("{min} to {max}") }
}

/// A whole number out of `min..=max`; `found` is how it reads (`` `0` ``, "a fractional number").
pub(super) fn out_of_range(ptr: &str, what: &str, min: u64, max: u64, found: &str) -> Problem {
    Problem::new(
        ptr,
        DiagnosticKind::InvalidValue,
        format!("{what} must be a whole number from {}, found {found}", range(min, max)),
    )
}

/// `n`, the value of `key` in the object at `parent`, checked against `min..=max`.
pub(super) fn check_range(
    n: u64,
    parent: &str,
    key: &str,
    what: &str,
    min: u64,
    max: u64,
    out: &mut Vec<Problem>,
) -> Option<u64> {
    if (min..=max).contains(&n) {
        Some(n)
    } else {
        out.push(out_of_range(&join(parent, key), what, min, max, &format!("`{n}`")));
        None
    }
}

/// Backticked choices joined with commas.
pub(super) fn list(choices: &[&str]) -> String {
    choices.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

/// What is wrong with an `arguments` schema that the meta-schema rejects: the keyword (the last
/// token of `at`) and its value, rather than the meta-schema's `anyOf` that rejected it.
pub(super) fn schema_message(at: &str, value: &Value, fallback: &str) -> String {
    let keyword = at.rsplit('/').next().unwrap_or("").replace("~1", "/").replace("~0", "~");
    let shown = match value {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    if keyword == "type" {
        let bad = match value {
            Value::String(s) => Some(s.as_str()),
            Value::Array(items) => {
                items.iter().filter_map(Value::as_str).find(|s| !SCHEMA_TYPES.contains(s))
            }
            _ => None,
        };
        let hint = bad
            .and_then(|b| did_you_mean(b, SCHEMA_TYPES))
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        return format!(
            "invalid JSON Schema for `arguments`: keyword `type` has the value `{}`, which is not \
             a JSON Schema type: expected one of {} (or an array of them){hint}",
            bad.unwrap_or(&shown),
            list(SCHEMA_TYPES)
        );
    }
    if keyword.is_empty() || keyword.parse::<usize>().is_ok() {
        return format!("invalid JSON Schema for `arguments`: {}", flatten(fallback));
    }
    format!(
        "invalid JSON Schema for `arguments`: keyword `{keyword}` cannot have the value `{shown}`: {}",
        flatten(fallback)
    )
}

/// What a window that is neither a name nor a number means, and what to write instead.
pub(super) fn window_message(w: &str) -> String {
    let t = w.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let per = match unit.trim().to_ascii_lowercase().as_str() {
        "" => Some(1),
        "s" | "sec" | "secs" | "second" | "seconds" => Some(1u64),
        "m" | "min" | "mins" | "minute" | "minutes" => Some(60),
        "h" | "hr" | "hrs" | "hour" | "hours" => Some(3600),
        "d" | "day" | "days" => Some(86_400),
        _ => None,
    };
    let seconds = n.parse::<u64>().ok().zip(per).and_then(|(n, per)| n.checked_mul(per));
    let hint = match seconds {
        Some(s) if (1..=MAX_WINDOW_SECONDS).contains(&s) => {
            format!("; write `{s}` (a number, not a string) for {w:?}")
        }
        _ => did_you_mean(w, WINDOWS).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default(),
    };
    format!(
        "unknown window `{w}`: a window is a name (`second`, `minute`, `hour`, `day`) or a number of \
         whole seconds (`60`){hint}"
    )
}

/// One line of an error message from a dependency.
pub(super) fn flatten(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
