//! `eq`, `neq`, `in`, `not_in`: a value of another JSON type than the operand is unknown, never a
//! way through (issue 10, item 11; language §3). `null` and absent are simply not equal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mcp_policy::{DecisionKind, Evaluator, Policy, ToolCall};
use serde_json::{Value, json};

use DecisionKind::{Allow, Deny};

fn one_check(key: &str, op: &str, operand: Value) -> Evaluator {
    let policy: Policy = json!({"version": "1", "default": "deny", "tools": {"t": {
        key: [{"conditions": [{"path": "args.v", "op": op, "value": operand}]}]}}})
    .to_string()
    .parse()
    .unwrap();
    Evaluator::new(policy)
}

fn decide(e: &Evaluator, args: Value) -> DecisionKind {
    e.evaluate(&ToolCall::new("t").with_arguments(&args)).kind()
}

#[test]
fn deny_if_eq_a_string_denies_an_array_holding_it() {
    let e = one_check("deny_if", "eq", json!("ceo@corp.com"));
    assert_eq!(decide(&e, json!({"v": ["ceo@corp.com"]})), Deny);
    assert_eq!(decide(&e, json!({"v": {"to": "ceo@corp.com"}})), Deny);
    assert_eq!(decide(&e, json!({"v": 1})), Deny);
    assert_eq!(decide(&e, json!({"v": "ceo@corp.com"})), Deny);
    assert_eq!(decide(&e, json!({"v": "cfo@corp.com"})), Allow);
    // Absent and null are simply not equal.
    assert_eq!(decide(&e, json!({})), Allow);
    assert_eq!(decide(&e, json!({"v": null})), Allow);
}

#[test]
fn require_eq_a_number_fails_for_a_string() {
    let e = one_check("require", "eq", json!(5));
    assert_eq!(decide(&e, json!({"v": "5"})), Deny);
    assert_eq!(decide(&e, json!({"v": [5]})), Deny);
    assert_eq!(decide(&e, json!({"v": 5.0})), Allow);
    assert_eq!(decide(&e, json!({"v": 5})), Allow);
    assert_eq!(decide(&e, json!({})), Deny);
}

#[test]
fn deny_if_neq_fires_on_another_type() {
    // "deny unless v is exactly `prod`": an array is not a way around it.
    let e = one_check("deny_if", "neq", json!("prod"));
    assert_eq!(decide(&e, json!({"v": "prod"})), Allow);
    assert_eq!(decide(&e, json!({"v": ["prod"]})), Deny);
    assert_eq!(decide(&e, json!({"v": "dev"})), Deny);
    assert_eq!(decide(&e, json!({})), Deny);
}

#[test]
fn in_is_unknown_when_no_element_has_the_values_type() {
    let e = one_check("deny_if", "in", json!(["ceo@corp.com", "cfo@corp.com"]));
    assert_eq!(decide(&e, json!({"v": ["ceo@corp.com"]})), Deny);
    assert_eq!(decide(&e, json!({"v": 7})), Deny);
    assert_eq!(decide(&e, json!({"v": "ceo@corp.com"})), Deny);
    assert_eq!(decide(&e, json!({"v": "dev@corp.com"})), Allow);
    assert_eq!(decide(&e, json!({})), Allow);

    let e = one_check("require", "in", json!(["eu-west-1", "eu-central-1"]));
    assert_eq!(decide(&e, json!({"v": "eu-west-1"})), Allow);
    assert_eq!(decide(&e, json!({"v": ["eu-west-1"]})), Deny);
    assert_eq!(decide(&e, json!({})), Deny);

    let e = one_check("require", "not_in", json!(["us-east-1"]));
    assert_eq!(decide(&e, json!({"v": "eu-west-1"})), Allow);
    assert_eq!(decide(&e, json!({"v": ["eu-west-1"]})), Deny);
    assert_eq!(decide(&e, json!({})), Allow, "absent is in no list without null");

    // Mixed lists: an element of the value's type makes the answer definite.
    let e = one_check("deny_if", "in", json!([1, "one", null]));
    assert_eq!(decide(&e, json!({"v": 2})), Allow);
    assert_eq!(decide(&e, json!({"v": "two"})), Allow);
    assert_eq!(decide(&e, json!({"v": true})), Deny);
    assert_eq!(decide(&e, json!({})), Deny, "null is in the list");
}

#[test]
fn a_null_operand_tests_for_null_or_absent() {
    let e = one_check("deny_if", "eq", Value::Null);
    assert_eq!(decide(&e, json!({})), Deny);
    assert_eq!(decide(&e, json!({"v": null})), Deny);
    assert_eq!(decide(&e, json!({"v": "x"})), Allow);
    assert_eq!(decide(&e, json!({"v": [null]})), Allow);
}
