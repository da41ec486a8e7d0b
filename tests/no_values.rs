//! No argument value ever reaches a decision (issue 10, item 2): for every path of the evaluator
//! that denies, limits or asks for approval, a unique value placed in the arguments appears in
//! none of the decision's message, its client text, its JSON or its display, and every message
//! is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use mcp_policy::{
    ChargeOutcome, ChargeRequest, CounterStore, Decision, DecisionKind, Evaluator, ManualClock,
    Policy, StoreError, Timestamp, ToolCall,
};
use serde_json::{Value, json};

/// A string no policy, pointer or message contains.
const SECRET: &str = "SECRET-5f1c9e-value";
/// A number no policy or message contains (as digits).
const SECRET_NUMBER: u64 = 987_654_321_987;

fn policy() -> Policy {
    json!({"version": "1", "default": "deny", "hide": ["hidden"], "tools": {
        "typed": {"arguments": {"type": "object", "properties": {
            "statement": {"type": "integer"},
            "short": {"type": "string", "maxLength": 8},
            "long": {"type": "string", "minLength": 100},
            "ip": {"type": "string", "format": "ipv4"},
            "pat": {"type": "string", "pattern": "^[a-z]+$"},
            "choice": {"enum": ["a", "b"]},
            "fixed": {"const": "x"},
            "small": {"type": "number", "maximum": 10},
            "big": {"type": "number", "minimum": 1e15},
            "xmax": {"type": "number", "exclusiveMaximum": 10},
            "xmin": {"type": "number", "exclusiveMinimum": 1e15},
            "mult": {"type": "number", "multipleOf": 7},
            "list": {"type": "array", "maxItems": 1, "uniqueItems": true},
            "many": {"type": "array", "minItems": 3},
            "tags": {"type": "array", "contains": {"const": "x"}},
            "any": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
            "one": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
            "notstr": {"not": {"type": "string"}},
            "never": false,
            "obj": {"type": "object", "propertyNames": {"maxLength": 3},
                    "maxProperties": 1}
        }, "required": ["statement"]}},
        "closed": {"arguments": {"type": "object", "additionalProperties": false}},
        "open": {"arguments": {"type": "object", "additionalProperties": {"type": "integer"}}},
        "required": {"require": [{"conditions": [
            {"path": "args.who", "op": "eq", "value": "alice"}]}]},
        "denied": {"deny_if": [{"conditions": [
            {"path": "args.q", "op": "contains", "value": "SEC"}]}]},
        "approved": {"approve_if": [{"conditions": [
            {"path": "args.q", "op": "exists"}]}]},
        "spend": {"limits": [{"counter": "spend", "window": "day", "max": 100,
                              "increment_from": "args.amount"}]},
        "limited": {"limits": [{"counter": "c", "window": "minute", "max": 1}]}
    }})
    .to_string()
    .parse()
    .unwrap()
}

fn evaluator() -> Evaluator {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_767_225_600.0)));
    Evaluator::new(policy()).with_clock(clock)
}

/// Asserts that `d` is not an allow and quotes no value of the call.
fn assert_clean(d: &Decision<'_>, what: &str) {
    assert_ne!(d.kind(), DecisionKind::Allow, "{what}: {d}");
    let number = SECRET_NUMBER.to_string();
    let texts = [
        ("message", d.message().to_owned()),
        ("client_text", d.client_text().unwrap()),
        ("to_json", d.to_json().to_string()),
        ("serialize", serde_json::to_string(d).unwrap()),
        ("display", d.to_string()),
    ];
    for (name, text) in texts {
        assert!(!text.contains(SECRET), "{what}: {name} quotes the value: {text}");
        assert!(!text.contains(&number), "{what}: {name} quotes the number: {text}");
        assert!(!text.contains("SECRET"), "{what}: {name} quotes part of the value: {text}");
    }
    assert!(d.message().len() <= 1024, "{what}: message of {} bytes", d.message().len());
}

fn decide(e: &Evaluator, tool: &str, args: &Value) -> (DecisionKind, String) {
    let d = e.evaluate(&ToolCall::new(tool).with_arguments(args).with_grant("g"));
    assert_clean(&d, &format!("{tool} {args}"));
    (d.kind(), d.message().to_owned())
}

#[test]
fn every_schema_failure_names_the_pointer_and_the_rule_not_the_value() {
    let e = evaluator();
    let s = SECRET;
    let n = SECRET_NUMBER;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"statement": s}), "argument `/statement` is invalid: expected type `integer`"),
        (json!({"statement": 1, "short": s}), "is longer than 8 characters"),
        (json!({"statement": 1, "long": s}), "is shorter than 100 characters"),
        (json!({"statement": 1, "ip": s}), "is not a valid `ipv4`"),
        (json!({"statement": 1, "pat": s}), "does not match the pattern `^[a-z]+$`"),
        (json!({"statement": 1, "choice": s}), "`enum`"),
        (json!({"statement": 1, "fixed": s}), "`const`"),
        (json!({"statement": 1, "small": n}), "is greater than the maximum of 10"),
        (json!({"statement": 1, "big": -(n as i64)}), "is less than the minimum of"),
        (json!({"statement": 1, "xmax": n}), "exclusive maximum of 10"),
        (json!({"statement": 1, "xmin": -(n as i64)}), "exclusive minimum"),
        (json!({"statement": 1, "mult": n + 1}), "is not a multiple of 7"),
        (json!({"statement": 1, "list": [s, s]}), "has more than 1 item"),
        (json!({"statement": 1, "many": [s]}), "has fewer than 3 items"),
        (json!({"statement": 1, "tags": [s]}), "`contains`"),
        (json!({"statement": 1, "any": s}), "`anyOf`"),
        (json!({"statement": 1, "one": s}), "`oneOf`"),
        (json!({"statement": 1, "notstr": s}), "`not`"),
        (json!({"statement": 1, "never": s}), "`false`"),
        (json!({"statement": 1, "obj": {"abcdef": s}}), "`propertyNames`"),
        (json!({"statement": 1, "obj": {"a": s, "b": s}}), "has more than 1 property"),
        (json!({"short": s}), "the required property `statement` is missing"),
    ];
    for (args, expected) in cases {
        let (kind, message) = decide(&e, "typed", &args);
        assert_eq!(kind, DecisionKind::Deny, "{args}");
        assert!(message.contains(expected), "{args}: {message}");
        assert!(message.starts_with("argument `/"), "{args}: {message}");
    }
    let (kind, message) = decide(&e, "closed", &json!({"extra": s}));
    assert_eq!(kind, DecisionKind::Deny);
    assert_eq!(
        message,
        "argument `/` is invalid: has a property that `additionalProperties` does not allow"
    );
}

#[test]
fn a_ten_mib_argument_gets_a_small_refusal() {
    let e = evaluator();
    let huge = format!("{SECRET}{}", "x".repeat(10 * 1024 * 1024));
    for args in [json!({"statement": huge}), json!({"statement": 1, "short": huge})] {
        let call = ToolCall::new("typed").with_arguments(&args);
        let d = e.evaluate(&call);
        assert_eq!(d.kind(), DecisionKind::Deny);
        assert_clean(&d, "10 MiB");
        assert!(d.to_json().to_string().len() < 1024 + 256, "{}", d.to_json());
    }
    // A 10 MiB property name is cut in the pointer, on a character boundary.
    let mut map = serde_json::Map::new();
    map.insert("é".repeat(5 * 1024 * 1024), json!(SECRET));
    let args = Value::Object(map);
    let d = e.evaluate(&ToolCall::new("open").with_arguments(&args));
    assert_eq!(d.kind(), DecisionKind::Deny);
    assert_clean(&d, "10 MiB name");
    assert!(d.message().starts_with("argument `/éé"), "{}", d.message());
    assert!(d.message().contains("…` is invalid: expected type `integer`"), "{}", d.message());
}

#[test]
fn checks_and_approvals_quote_no_value() {
    let e = evaluator();
    let s = SECRET;
    assert_eq!(decide(&e, "hidden", &json!({"q": s})).0, DecisionKind::Deny);
    assert_eq!(decide(&e, "unknown_tool", &json!({"q": s})).0, DecisionKind::Deny);
    assert_eq!(decide(&e, "required", &json!({"who": s})).0, DecisionKind::Deny);
    assert_eq!(decide(&e, "denied", &json!({"q": s})).0, DecisionKind::Deny);
    assert_eq!(decide(&e, "approved", &json!({"q": s})).0, DecisionKind::Approve);
    // A key that is not valid for the call.
    let args = json!({"q": s});
    let key = format!("{SECRET}-key");
    let call = ToolCall::new("approved").with_arguments(&args).with_approval_key(&key);
    let d = e.evaluate(&call);
    assert_eq!(d.kind(), DecisionKind::Deny);
    // The key is the caller's own text; the message must not echo it either.
    assert_clean(&d, "bad approval key");
}

#[test]
fn limits_quote_no_value() {
    let e = evaluator();
    let n = SECRET_NUMBER;
    for (args, why) in [
        (json!({"amount": -(n as i64)}), "found a negative number"),
        (json!({"amount": -(n as f64) - 0.5}), "found a negative number"),
        (json!({"amount": SECRET}), "found a string"),
        (json!({"amount": [SECRET]}), "found an array"),
        (json!({"other": SECRET}), "it is absent"),
    ] {
        let (kind, message) = decide(&e, "spend", &args);
        assert_eq!(kind, DecisionKind::Deny, "{args}");
        assert!(message.contains(why), "{args}: {message}");
    }
    for amount in [json!(n), json!(n as f64 + 0.5), json!(1e300)] {
        let (kind, message) = decide(&e, "spend", &json!({ "amount": amount }));
        assert_eq!(kind, DecisionKind::Deny, "{amount}");
        assert!(message.contains("can never be admitted"), "{message}");
    }
    let args = json!({"q": SECRET});
    assert!(
        e.evaluate(&ToolCall::new("limited").with_arguments(&args).with_grant("g")).is_allowed()
    );
    assert_eq!(decide(&e, "limited", &args).0, DecisionKind::Limit);
}

#[test]
fn malformed_calls_and_broken_clocks_and_stores_quote_no_value() {
    let e = evaluator();
    let s = json!(SECRET);
    let call = ToolCall::new("typed").with_arguments(&s);
    assert_clean(&e.evaluate(&call), "arguments not an object");
    let call = ToolCall::new("required").with_context(&s);
    assert_clean(&e.evaluate(&call), "context not an object");
    let mut deep = json!(SECRET);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let args = json!({ "statement": deep });
    assert_clean(&e.evaluate(&ToolCall::new("typed").with_arguments(&args)), "too deep");

    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1e300)));
    let broken_clock = Evaluator::new(policy()).with_clock(clock);
    let args = json!({"q": SECRET});
    assert_clean(
        &broken_clock.evaluate(&ToolCall::new("limited").with_arguments(&args)),
        "clock out of range",
    );
    assert_clean(
        &broken_clock.evaluate(&ToolCall::new("approved").with_arguments(&args)),
        "clock out of range, approval",
    );

    struct Broken;
    impl CounterStore for Broken {
        fn charge(
            &self,
            _: Timestamp,
            _: &[ChargeRequest<'_>],
        ) -> Result<ChargeOutcome, StoreError> {
            Err(StoreError::new("connection refused"))
        }
        fn refund(
            &self,
            _: Timestamp,
            _: Timestamp,
            _: &[ChargeRequest<'_>],
        ) -> Result<(), StoreError> {
            Err(StoreError::new("connection refused"))
        }
    }
    let store_down = Evaluator::with_store(policy(), Broken);
    let args = json!({"amount": 5, "q": SECRET});
    assert_clean(&store_down.evaluate(&ToolCall::new("spend").with_arguments(&args)), "store");
}
