//! The three-valued evaluation of compiled conditions.
//!
//! The compiled form of a condition ([`Condition`], [`Test`]) is data of the policy layer
//! (`src/policy/condition.rs`); this module only evaluates it against a call.
//!
//! A condition compares the value at a path of the call document with a value of the policy
//! and answers true, false or **unknown**. Unknown is the answer when the value has a type the op does
//! not take (`gt` on a string, `regex` on a number, `within` on `null`) or, for `eq`, `neq`, `in`
//! and `not_in`, another JSON type than the operand (`null` and absent excepted: simply not
//! equal), so that a value of the wrong type can never let a call through: `require` holds only when its check is true, while
//! `deny_if` and `approve_if` fire when their check is true *or unknown*.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::call::ToolCall;
use crate::policy::condition::{Comparison, Condition, Test, normalize};
use crate::policy::path::{Path, Root};

/// A truth value of three-valued logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truth {
    True,
    False,
    Unknown,
}

impl From<bool> for Truth {
    fn from(b: bool) -> Self {
        if b { Truth::True } else { Truth::False }
    }
}

/// The value a path reads in a call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Found<'a> {
    /// The path does not exist.
    Absent,
    /// A JSON value (an explicit `null` included).
    Json(&'a Value),
    /// A string that is not stored in a JSON value (the tool name, the grant, the session).
    Str(&'a str),
}

impl Condition {
    /// Evaluates the condition against `call`.
    pub(crate) fn eval(&self, call: &ToolCall<'_>) -> Truth {
        self.test.eval(resolve(&self.path, call))
    }
}

/// Reads the value at `path` in the call document.
pub(crate) fn resolve<'a>(path: &Path, call: &ToolCall<'a>) -> Found<'a> {
    let start: Found<'a> = match path.root {
        Root::Tool => Found::Str(call.tool()),
        Root::Grant => Found::Str(call.grant()),
        Root::Session => match call.session() {
            Some(s) => Found::Str(s),
            None => Found::Json(&Value::Null),
        },
        Root::Args => Found::Json(call.arguments_value()),
        Root::Context => Found::Json(call.context_value()),
    };
    let mut at = start;
    for seg in path.segments.iter() {
        at = match at {
            Found::Json(Value::Object(map)) => {
                map.get(&*seg.key).map_or(Found::Absent, Found::Json)
            }
            Found::Json(Value::Array(items)) => match seg.index.and_then(|i| items.get(i)) {
                Some(v) => Found::Json(v),
                None => Found::Absent,
            },
            _ => Found::Absent,
        };
        if let Found::Absent = at {
            break;
        }
    }
    at
}

impl Test {
    pub(crate) fn eval(&self, found: Found<'_>) -> Truth {
        match self {
            Test::Exists(want) => Truth::from(!matches!(found, Found::Absent) == *want),
            Test::Eq(v) => found_eq(found, v),
            Test::Neq(v) => found_eq(found, v).not(),
            Test::In(vs) => found_in(found, vs),
            Test::NotIn(vs) => found_in(found, vs).not(),
            Test::Compare(op, n) => match found {
                Found::Json(Value::Number(x)) => match number_cmp(x, n) {
                    Some(ord) => Truth::from(match op {
                        Comparison::Lt => ord == Ordering::Less,
                        Comparison::Lte => ord != Ordering::Greater,
                        Comparison::Gt => ord == Ordering::Greater,
                        Comparison::Gte => ord != Ordering::Less,
                    }),
                    None => Truth::Unknown,
                },
                _ => Truth::Unknown,
            },
            Test::Contains(needle) => match (as_str(found), found) {
                (Some(hay), _) => match needle {
                    Value::String(n) => Truth::from(hay.contains(n.as_str())),
                    _ => Truth::Unknown,
                },
                (None, Found::Json(Value::Array(items))) => {
                    Truth::from(items.iter().any(|i| json_eq(i, needle)))
                }
                _ => Truth::Unknown,
            },
            Test::StartsWith(p) => {
                as_str(found).map_or(Truth::Unknown, |s| s.starts_with(&**p).into())
            }
            Test::EndsWith(p) => as_str(found).map_or(Truth::Unknown, |s| s.ends_with(&**p).into()),
            Test::Regex(re) => {
                as_str(found).and_then(|s| re.is_match(s)).map_or(Truth::Unknown, Truth::from)
            }
            Test::Within(dirs) => match as_str(found) {
                Some(s) if s.starts_with('/') => {
                    let path = normalize(s);
                    Truth::from(dirs.iter().any(|d| {
                        d.len() <= path.len() && d.iter().zip(&path).all(|(a, b)| **a == **b)
                    }))
                }
                _ => Truth::Unknown,
            },
        }
    }
}

fn as_str<'a>(found: Found<'a>) -> Option<&'a str> {
    match found {
        Found::Str(s) => Some(s),
        Found::Json(Value::String(s)) => Some(s),
        _ => None,
    }
}

impl Truth {
    /// Three-valued negation: unknown stays unknown.
    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }
}

/// The JSON type of a value, for the type rule of `eq` and `in` (`1` and `1.0` share one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

fn json_type(v: &Value) -> JsonType {
    match v {
        Value::Null => JsonType::Null,
        Value::Bool(_) => JsonType::Bool,
        Value::Number(_) => JsonType::Number,
        Value::String(_) => JsonType::String,
        Value::Array(_) => JsonType::Array,
        Value::Object(_) => JsonType::Object,
    }
}

/// The JSON type of a found value; an absent value reads as `null`.
fn found_type(found: Found<'_>) -> JsonType {
    match found {
        Found::Absent => JsonType::Null,
        Found::Str(_) => JsonType::String,
        Found::Json(j) => json_type(j),
    }
}

/// Equality of a found value with a policy value, three-valued: a value of another JSON type
/// than the operand is unknown (so `["ceo@corp.com"]` is neither equal nor unequal to
/// `"ceo@corp.com"`), except `null` and an absent value, which are simply not equal to a
/// non-null operand (and equal to a `null` one); a `null` operand likewise tests for
/// null-or-absent, definitely.
fn found_eq(found: Found<'_>, v: &Value) -> Truth {
    let t = found_type(found);
    if t == JsonType::Null || v.is_null() {
        return Truth::from(t == JsonType::Null && v.is_null());
    }
    if t != json_type(v) {
        return Truth::Unknown;
    }
    Truth::from(match found {
        Found::Absent => false,
        Found::Str(s) => matches!(v, Value::String(t) if t == s),
        Found::Json(j) => json_eq(j, v),
    })
}

/// Membership, three-valued: true when an element equals the found value; unknown when no
/// element has the found value's JSON type (a `null` or absent value is never unknown: it is
/// in the list exactly when `null` is); false otherwise.
fn found_in(found: Found<'_>, vs: &[Value]) -> Truth {
    let t = found_type(found);
    if t == JsonType::Null {
        return Truth::from(vs.iter().any(Value::is_null));
    }
    let mut comparable = false;
    for v in vs.iter().filter(|v| json_type(v) == t) {
        comparable = true;
        if found_eq(found, v) == Truth::True {
            return Truth::True;
        }
    }
    if comparable { Truth::False } else { Truth::Unknown }
}

/// Deep JSON equality in which numbers compare numerically (`1` equals `1.0`), exactly.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// Exact numeric comparison of two JSON numbers, integers never rounded through a float.
pub(crate) fn number_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    match (as_int(a), as_int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        (Some(x), None) => b.as_f64().and_then(|f| int_float_cmp(x, f)),
        (None, Some(y)) => a.as_f64().and_then(|f| int_float_cmp(y, f)).map(Ordering::reverse),
        (None, None) => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn as_int(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

/// Compares an integer with a float exactly.
fn int_float_cmp(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // Every integer of a JSON number lies in [-2^63, 2^64).
    if f >= 18_446_744_073_709_551_616.0 {
        return Some(Ordering::Less);
    }
    if f < -9_223_372_036_854_775_808.0 {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    // |t| < 2^64, so the conversion is exact.
    #[allow(clippy::cast_possible_truncation)]
    let ti = t as i128;
    match i.cmp(&ti) {
        Ordering::Equal => {
            if f > t {
                Some(Ordering::Less)
            } else if f < t {
                Some(Ordering::Greater)
            } else {
                Some(Ordering::Equal)
            }
        }
        ord => Some(ord),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(v: Value) -> Number {
        match v {
            Value::Number(n) => n,
            _ => unreachable!(),
        }
    }

    #[test]
    fn numbers_compare_exactly() {
        assert_eq!(number_cmp(&n(json!(1)), &n(json!(1.0))), Some(Ordering::Equal));
        assert_eq!(number_cmp(&n(json!(-1)), &n(json!(-1.0))), Some(Ordering::Equal));
        // 2^53 + 1 is not a float; the float 2^53 must not equal it.
        let big = n(json!(9_007_199_254_740_993u64));
        assert_eq!(number_cmp(&big, &n(json!(9_007_199_254_740_992.0))), Some(Ordering::Greater));
        assert_eq!(number_cmp(&n(json!(u64::MAX)), &n(json!(i64::MIN))), Some(Ordering::Greater));
        assert_eq!(number_cmp(&n(json!(2)), &n(json!(2.5))), Some(Ordering::Less));
        assert_eq!(number_cmp(&n(json!(-2)), &n(json!(-2.5))), Some(Ordering::Greater));
        assert_eq!(number_cmp(&n(json!(u64::MAX)), &n(json!(1e20))), Some(Ordering::Less));
        assert_eq!(number_cmp(&n(json!(i64::MIN)), &n(json!(-1e19))), Some(Ordering::Greater));
        assert_eq!(number_cmp(&n(json!(0.5)), &n(json!(0.25))), Some(Ordering::Greater));
    }

    #[test]
    fn deep_equality() {
        assert!(json_eq(&json!({"a": [1, {"b": 2.0}]}), &json!({"a": [1.0, {"b": 2}]})));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!json_eq(&json!("1"), &json!(1)));
    }

    #[test]
    fn eq_and_in_are_unknown_across_json_types() {
        fn j(v: &Value) -> Found<'_> {
            Found::Json(v)
        }
        let list = json!(["ceo@corp.com"]);
        let s = json!("ceo@corp.com");
        let eq = Test::Eq(s.clone());
        assert_eq!(eq.eval(j(&s)), Truth::True);
        assert_eq!(eq.eval(j(&list)), Truth::Unknown);
        assert_eq!(Test::Neq(s.clone()).eval(j(&list)), Truth::Unknown);
        assert_eq!(eq.eval(j(&json!("x"))), Truth::False);
        assert_eq!(eq.eval(Found::Absent), Truth::False);
        assert_eq!(eq.eval(j(&Value::Null)), Truth::False);
        assert_eq!(Test::Neq(s.clone()).eval(Found::Absent), Truth::True);
        assert_eq!(Test::Eq(json!(5)).eval(j(&json!("5"))), Truth::Unknown);
        assert_eq!(Test::Eq(json!(5)).eval(j(&json!(5.0))), Truth::True);
        assert_eq!(Test::Eq(json!(true)).eval(j(&json!(1))), Truth::Unknown);
        assert_eq!(Test::Eq(json!({"a": 1})).eval(j(&json!({"a": 1.0}))), Truth::True);
        assert_eq!(Test::Eq(json!([1])).eval(j(&json!(["1"]))), Truth::False);
        // A `null` operand tests for null or absent, definitely.
        assert_eq!(Test::Eq(Value::Null).eval(Found::Absent), Truth::True);
        assert_eq!(Test::Eq(Value::Null).eval(j(&json!("x"))), Truth::False);
        assert_eq!(Test::Neq(Value::Null).eval(j(&json!("x"))), Truth::True);
        // The tool name, grant and session are strings.
        assert_eq!(Test::Eq(json!(1)).eval(Found::Str("1")), Truth::Unknown);
        assert_eq!(Test::Eq(json!("g")).eval(Found::Str("g")), Truth::True);

        let emails = Test::In(vec![json!("a@corp.com"), json!("b@corp.com")]);
        assert_eq!(emails.eval(j(&json!("a@corp.com"))), Truth::True);
        assert_eq!(emails.eval(j(&json!("c@corp.com"))), Truth::False);
        assert_eq!(emails.eval(j(&json!(["a@corp.com"]))), Truth::Unknown);
        assert_eq!(emails.eval(Found::Absent), Truth::False);
        let not_in = Test::NotIn(vec![json!("a@corp.com")]);
        assert_eq!(not_in.eval(j(&json!(["a@corp.com"]))), Truth::Unknown);
        assert_eq!(not_in.eval(Found::Absent), Truth::True);
        let mixed = Test::In(vec![json!(1), json!("1"), Value::Null]);
        assert_eq!(mixed.eval(j(&json!(1.0))), Truth::True);
        assert_eq!(mixed.eval(j(&json!(2))), Truth::False);
        assert_eq!(mixed.eval(j(&json!(true))), Truth::Unknown);
        assert_eq!(mixed.eval(Found::Absent), Truth::True);
        assert_eq!(Test::In(vec![]).eval(j(&json!(1))), Truth::Unknown);
        assert_eq!(Test::In(vec![]).eval(Found::Absent), Truth::False);
    }
}
