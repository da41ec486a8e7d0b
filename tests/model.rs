//! A reference model of the policy language and a property: for generated policies and call
//! sequences (under a manual clock), the real `Evaluator` and the model give the same decision
//! and rule for every call.
//!
//! The model is written to be obviously right rather than fast: no indexes, no sharding, no
//! caching; counters are a plain list of every charge ever made, and a window's count is a sum
//! over that list.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use mcp_policy::{DecisionKind, Evaluator, ManualClock, Policy, Timestamp, ToolCall};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const T0_NS: u64 = 1_767_225_600_000_000_000;

// ------------------------------------------------------------------------------- the model

/// Every counter's settings are fixed by its name, so generated policies never conflict.
fn counter_settings(name: &str) -> (u64, bool, &'static str) {
    match name {
        "c1" => (2, false, "grant"),
        "c2" => (3, true, "global"),
        _ => (1, false, "session"),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum T {
    True,
    False,
    Unknown,
}

struct Charge {
    counter: String,
    scope: String,
    at: u64,
    units: u64,
}

struct Model {
    doc: Value,
    charges: Vec<Charge>,
}

#[derive(Debug, Clone)]
struct Call {
    tool: String,
    args: Value,
    grant: String,
    session: Option<String>,
}

/// `*`-glob matching, by plain recursion.
fn glob(p: &[char], s: &[char]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some(('*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

fn matches(pattern: &str, tool: &str) -> bool {
    glob(&pattern.chars().collect::<Vec<_>>(), &tool.chars().collect::<Vec<_>>())
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            num(&Value::Number(x.clone())) == num(&Value::Number(y.clone()))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

/// The JSON type of a value, as the language's type rule sees it.
fn kind(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn not3(t: T) -> T {
    match t {
        T::True => T::False,
        T::False => T::True,
        T::Unknown => T::Unknown,
    }
}

/// `eq` (section 3): another JSON type than the operand is unknown, but `null` (absent
/// included) is simply not equal, and a `null` operand tests for null.
fn eq3(found: &Value, value: &Value) -> T {
    if found.is_null() || value.is_null() {
        return if found.is_null() && value.is_null() { T::True } else { T::False };
    }
    if kind(found) != kind(value) {
        return T::Unknown;
    }
    if same(found, value) { T::True } else { T::False }
}

/// `in`: unknown when no element has the value's type; `null` is in when `null` is.
fn in3(found: &Value, list: &[Value]) -> T {
    if found.is_null() {
        return if list.iter().any(Value::is_null) { T::True } else { T::False };
    }
    let typed: Vec<&Value> = list.iter().filter(|v| kind(v) == kind(found)).collect();
    if typed.is_empty() {
        T::Unknown
    } else if typed.iter().any(|v| same(found, v)) {
        T::True
    } else {
        T::False
    }
}

impl Model {
    fn resolve(&self, path: &str, call: &Call) -> Option<Value> {
        match path {
            "grant" => Some(Value::String(call.grant.clone())),
            "session" => Some(call.session.clone().map_or(Value::Null, Value::String)),
            p => call.args.get(p.strip_prefix("args.").unwrap()).cloned(),
        }
    }

    fn condition(&self, c: &Value, call: &Call) -> T {
        let found = self.resolve(c["path"].as_str().unwrap(), call);
        let value = &c["value"];
        let b = |x: bool| if x { T::True } else { T::False };
        let or_null = found.clone().unwrap_or(Value::Null);
        let string = found.as_ref().and_then(Value::as_str);
        match c["op"].as_str().unwrap() {
            "eq" => eq3(&or_null, value),
            "neq" => not3(eq3(&or_null, value)),
            "in" => in3(&or_null, value.as_array().unwrap()),
            "not_in" => not3(in3(&or_null, value.as_array().unwrap())),
            op @ ("lt" | "lte" | "gt" | "gte") => match found.as_ref().and_then(num) {
                None => T::Unknown,
                Some(x) => {
                    let y = num(value).unwrap();
                    b(match op {
                        "lt" => x < y,
                        "lte" => x <= y,
                        "gt" => x > y,
                        _ => x >= y,
                    })
                }
            },
            "contains" => match (&found, value) {
                (Some(Value::String(s)), Value::String(n)) => b(s.contains(n.as_str())),
                (Some(Value::String(_)), _) => T::Unknown,
                (Some(Value::Array(items)), v) => b(items.iter().any(|i| same(i, v))),
                _ => T::Unknown,
            },
            "starts_with" => {
                string.map_or(T::Unknown, |s| b(s.starts_with(value.as_str().unwrap())))
            }
            "ends_with" => string.map_or(T::Unknown, |s| b(s.ends_with(value.as_str().unwrap()))),
            "regex" => match (string, value.as_str().unwrap()) {
                (None, _) => T::Unknown,
                (Some(s), "^p") => b(s.starts_with('p')),
                (Some(s), "q$") => b(s.ends_with('q')),
                (_, other) => panic!("the model knows no regex {other}"),
            },
            "exists" => b(found.is_some() == value.as_bool().unwrap_or(true)),
            "within" => match string {
                Some(s) if s.starts_with('/') => {
                    let mut parts: Vec<&str> = Vec::new();
                    for p in s.split('/') {
                        match p {
                            "" | "." => {}
                            ".." => {
                                parts.pop();
                            }
                            p => parts.push(p),
                        }
                    }
                    b(parts.first() == Some(&"d"))
                }
                _ => T::Unknown,
            },
            other => panic!("the model knows no op {other}"),
        }
    }

    fn check(&self, check: &Value, call: &Call) -> T {
        let truths: Vec<T> = check["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| self.condition(c, call))
            .collect();
        if truths.contains(&T::False) {
            T::False
        } else if truths.contains(&T::Unknown) {
            T::Unknown
        } else {
            T::True
        }
    }

    fn count(&self, counter: &str, scope: &str, now: u64) -> u64 {
        let (window, sliding, _) = counter_settings(counter);
        let w = window * 1_000_000_000;
        self.charges
            .iter()
            .filter(|c| c.counter == counter && c.scope == scope)
            .filter(|c| {
                if sliding {
                    let g = w / 16;
                    (c.at / g + 1 + 16) * g > now
                } else {
                    c.at / w == now / w
                }
            })
            .map(|c| c.units)
            .sum()
    }

    fn decide(&mut self, call: &Call, now: u64) -> (DecisionKind, String) {
        use DecisionKind::*;
        let doc = self.doc.clone();
        for (i, h) in doc["hide"].as_array().cloned().unwrap_or_default().iter().enumerate() {
            if matches(h.as_str().unwrap(), &call.tool) {
                return (Deny, format!("/hide/{i}"));
            }
        }
        let tools = doc["tools"].as_object().cloned().unwrap_or_default();
        let key = if tools.contains_key(&call.tool) {
            Some(call.tool.clone())
        } else {
            tools
                .keys()
                .filter(|k| k.contains('*') && matches(k, &call.tool))
                .max_by_key(|k| k.chars().filter(|c| *c != '*').count())
                .cloned()
        };
        let (rule, rule_ptr) = match key {
            Some(k) => (tools[&k].clone(), format!("/tools/{k}")),
            None if doc["default"] == "allow" => (json!({}), "/default".to_owned()),
            None => return (Deny, "/default".to_owned()),
        };
        let all = doc.get("all_tools").cloned().unwrap_or(json!({}));
        let rules = [(rule, rule_ptr.clone()), (all, "/all_tools".to_owned())];
        // Step 6 (approve_if) decides only after the limits of step 7 are checked.
        let mut approve: Option<String> = None;
        'steps: for (list, fires) in
            [("require", None), ("deny_if", Some(Deny)), ("approve_if", Some(Approve))]
        {
            for (r, p) in &rules {
                for (i, check) in r
                    .get(list)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    let t = self.check(check, call);
                    let hit = match fires {
                        None => t != T::True,
                        Some(_) => t != T::False,
                    };
                    if hit && fires == Some(Approve) {
                        approve = Some(format!("{p}/{list}/{i}"));
                        break 'steps;
                    }
                    if hit {
                        return (fires.unwrap_or(Deny), format!("{p}/{list}/{i}"));
                    }
                }
            }
        }
        // Limits: units first, then the counts, then charge all.
        let mut planned: Vec<(String, String, u64, u64, String)> = Vec::new(); // counter, scope, units, max, pointer
        for (r, p) in &rules {
            for (i, l) in r
                .get("limits")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let pointer = format!("{p}/limits/{i}");
                let counter = l["counter"].as_str().unwrap().to_owned();
                let max = l["max"].as_u64().unwrap();
                let units = if l.get("increment_from").is_some() {
                    match call.args.get("n").and_then(Value::as_f64) {
                        Some(x) if x >= 0.0 => x.ceil() as u64,
                        _ => return (Deny, format!("{pointer}/increment_from")),
                    }
                } else {
                    l.get("increment").and_then(Value::as_u64).unwrap_or(1)
                };
                let earlier: u64 = planned.iter().filter(|q| q.0 == counter).map(|q| q.2).sum();
                if units + earlier > max {
                    return (Deny, pointer);
                }
                let scope = match counter_settings(&counter).2 {
                    "grant" => format!("g:{}", call.grant),
                    "global" => String::new(),
                    _ => match &call.session {
                        Some(s) => format!("s:{}/{s}", call.grant),
                        None => format!("n:{}", call.grant),
                    },
                };
                planned.push((counter, scope, units, max, pointer));
            }
        }
        for (j, (counter, scope, units, max, pointer)) in planned.iter().enumerate() {
            let earlier: u64 =
                planned[..j].iter().filter(|q| &q.0 == counter && &q.1 == scope).map(|q| q.2).sum();
            if self.count(counter, scope, now) + earlier + units > *max {
                return (Limit, pointer.clone());
            }
        }
        // An approve decision charges nothing: it is asked only when the limits have room.
        if let Some(pointer) = approve {
            return (Approve, pointer);
        }
        for (counter, scope, units, _, _) in planned {
            self.charges.push(Charge { counter, scope, at: now, units });
        }
        (Allow, rule_ptr)
    }
}

// -------------------------------------------------------------------------------- generators

fn condition() -> impl Strategy<Value = Value> {
    let path =
        prop_oneof![Just("args.x"), Just("args.y"), Just("args.n"), Just("grant"), Just("session")];
    let scalar = prop_oneof![
        Just(json!(0)),
        Just(json!(1)),
        Just(json!("p")),
        Just(json!(null)),
        Just(json!(true)),
        Just(json!(1.0))
    ];
    let op_value = prop_oneof![
        (prop_oneof![Just("eq"), Just("neq")], scalar.clone()).prop_map(|(o, v)| (o, v)),
        (prop_oneof![Just("in"), Just("not_in")], proptest::collection::vec(scalar.clone(), 0..3))
            .prop_map(|(o, v)| (o, json!(v))),
        (prop_oneof![Just("lt"), Just("lte"), Just("gt"), Just("gte")], 0..3i64)
            .prop_map(|(o, v)| (o, json!(v))),
        (Just("contains"), prop_oneof![Just(json!("p")), Just(json!(1))]),
        (prop_oneof![Just("starts_with"), Just("ends_with")], Just(json!("p"))),
        (Just("regex"), prop_oneof![Just(json!("^p")), Just(json!("q$"))]),
        (Just("exists"), any::<bool>().prop_map(|b| json!(b))),
        (Just("within"), Just(json!("/d"))),
    ];
    (path, op_value).prop_map(|(path, (op, value))| json!({"path": path, "op": op, "value": value}))
}

fn checks() -> impl Strategy<Value = Vec<Value>> {
    let some = proptest::collection::vec(
        proptest::collection::vec(condition(), 0..3).prop_map(|c| json!({"conditions": c})),
        1..3,
    );
    // Mostly no checks, so that calls get as far as the limits often enough.
    prop_oneof![4 => Just(Vec::new()), 1 => some]
}

fn limits() -> impl Strategy<Value = Vec<Value>> {
    limits_inner().prop_map(|mut v| {
        v.truncate(3);
        v
    })
}

fn limits_inner() -> impl Strategy<Value = Vec<Value>> {
    let limit = (prop_oneof![Just("c1"), Just("c2"), Just("c3")], 1..5u64, 0..3u64).prop_map(|(counter, max, inc)| {
        let (window, sliding, scope) = counter_settings(counter);
        let mut l = json!({"counter": counter, "window": window, "max": max, "scope": scope, "sliding": sliding});
        match inc {
            0 => {}
            1 => l["increment_from"] = json!("args.n"),
            _ => l["increment"] = json!(max.min(2)),
        }
        l
    });
    proptest::collection::vec(limit, 0..4)
}

fn rule() -> impl Strategy<Value = Value> {
    (checks(), checks(), checks(), limits()).prop_map(|(require, deny_if, approve_if, limits)| {
        let mut r = Map::new();
        for (k, v) in [
            ("require", require),
            ("deny_if", deny_if),
            ("approve_if", approve_if),
            ("limits", limits),
        ] {
            if !v.is_empty() {
                r.insert(k.to_owned(), Value::Array(v));
            }
        }
        Value::Object(r)
    })
}

fn policy() -> impl Strategy<Value = Value> {
    let keys = proptest::sample::subsequence(vec!["a1", "b1", "h", "a*", "b*", "*"], 0..=6);
    let hide = proptest::sample::subsequence(vec!["h", "b*"], 0..=2);
    (any::<bool>(), hide, keys, proptest::collection::vec(rule(), 6), proptest::option::of(rule())).prop_map(
        |(allow, hide, keys, rules, all_tools)| {
            let tools: Map<String, Value> = keys.into_iter().map(str::to_owned).zip(rules).collect();
            let mut doc = json!({"version": "1", "default": if allow { "allow" } else { "deny" }, "hide": hide, "tools": tools});
            if let Some(a) = all_tools {
                doc["all_tools"] = a;
            }
            doc
        },
    )
}

fn calls() -> impl Strategy<Value = Vec<(Call, u64)>> {
    let value = prop_oneof![
        Just(None),
        Just(Some(json!(0))),
        Just(Some(json!(1))),
        Just(Some(json!("p"))),
        Just(Some(json!("pq"))),
        Just(Some(json!(null))),
        Just(Some(json!(true))),
        Just(Some(json!([1]))),
        Just(Some(json!("/d/../d/e"))),
        Just(Some(json!("/e/../d"))),
        Just(Some(json!("d/e"))),
    ];
    let n = prop_oneof![
        Just(None),
        Just(Some(json!(0))),
        Just(Some(json!(1))),
        Just(Some(json!(2))),
        Just(Some(json!(1.5))),
        Just(Some(json!(-1))),
        Just(Some(json!("2")))
    ];
    let call = (
        prop_oneof![Just("a1"), Just("a2"), Just("b1"), Just("h"), Just("zz")],
        value.clone(),
        value,
        n,
        prop_oneof![Just("g1"), Just("g2")],
        prop_oneof![Just(None), Just(Some("s1"))],
        0..2500u64,
    )
        .prop_map(|(tool, x, y, n, grant, session, dt)| {
            let mut args = Map::new();
            for (k, v) in [("x", x), ("y", y), ("n", n)] {
                if let Some(v) = v {
                    args.insert(k.to_owned(), v);
                }
            }
            (
                Call {
                    tool: tool.to_owned(),
                    args: Value::Object(args),
                    grant: grant.to_owned(),
                    session: session.map(str::to_owned),
                },
                dt,
            )
        });
    proptest::collection::vec(call, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_evaluator_decides_like_the_model(doc in policy(), calls in calls()) {
        // Generated policies may be invalid (ambiguous patterns): only valid ones are compared.
        let Ok(policy) = Policy::from_json_str(&doc.to_string()) else { return Ok(()) };
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_nanos(T0_NS)));
        let evaluator = Evaluator::new(policy).with_clock(clock.clone());
        let mut model = Model { doc: doc.clone(), charges: Vec::new() };
        let mut now = T0_NS;
        for (i, (call, dt)) in calls.iter().enumerate() {
            now += dt * 1_000_000;
            clock.set(Timestamp::from_unix_nanos(now));
            let c = ToolCall::new(&call.tool).with_arguments(&call.args).with_grant(&call.grant)
                .with_optional_session(call.session.as_deref());
            let real = evaluator.evaluate(&c);
            let expected = model.decide(call, now);
            prop_assert_eq!(
                (real.kind(), real.rule().into_owned()),
                expected,
                "call {} {:?} {} of policy {}", i, call.tool, call.args, doc
            );
        }
    }
}
