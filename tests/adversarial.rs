//! Arguments, names and documents built to slip past rules or to bring the engine down. Each
//! case says what the decision must be and why. None may panic, none may allow what the policy
//! denies. (Time and memory bounds are measured, not asserted: see docs/security.md.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mcp_policy::{DecisionKind, Evaluator, Policy, ToolCall};
use serde_json::{Value, json};

use DecisionKind::{Allow, Deny, Limit};

fn evaluator(doc: Value) -> Evaluator {
    Evaluator::new(Policy::from_json_str(&doc.to_string()).unwrap())
}

fn decide(e: &Evaluator, tool: &str, args: &Value) -> DecisionKind {
    e.evaluate(&ToolCall::new(tool).with_arguments(args).with_grant("g")).kind()
}

/// `deny_if` a condition on `args.v`, with `expect` for each value of `v`.
fn deny_if_cases(op: &str, operand: Value, cases: &[(Value, DecisionKind, &str)]) {
    let e = evaluator(json!({"version": "1", "default": "deny", "tools": {"t": {
        "deny_if": [{"conditions": [{"path": "args.v", "op": op, "value": operand}]}]}}}));
    for (v, expect, why) in cases {
        assert_eq!(decide(&e, "t", &json!({ "v": v })), *expect, "{op} {operand} on {v}: {why}");
    }
}

#[test]
fn numbers_in_disguise() {
    deny_if_cases(
        "gt",
        json!(10000),
        &[
            (
                json!("99999"),
                Deny,
                "a number as a string is not a number: unknown, so deny_if fires",
            ),
            (json!("1e9"), Deny, "exponent notation in a string: unknown"),
            (json!("NaN"), Deny, "NaN-like string: unknown"),
            (json!("Infinity"), Deny, "Infinity-like string: unknown"),
            (json!("-inf"), Deny, "-inf-like string: unknown"),
            (json!(1e300), Deny, "a huge float is greater"),
            (json!(18_446_744_073_709_551_615u64), Deny, "u64::MAX is greater, compared exactly"),
            (json!(10000.000000001), Deny, "just above, as a float"),
            (json!(10000), Allow, "equal is not greater"),
            (json!(-9_223_372_036_854_775_808i64), Allow, "i64::MIN is smaller"),
            (json!(-0.0), Allow, "-0 is 0"),
        ],
    );
    deny_if_cases(
        "eq",
        json!(1000),
        &[
            (json!(1e3), Deny, "1e3 is 1000"),
            (json!(1000.0), Deny, "1000.0 is 1000"),
            (
                json!("1000"),
                Deny,
                "a string is another JSON type than the number: unknown, so deny_if fires",
            ),
            (json!([1000]), Deny, "an array holding the number: unknown, so deny_if fires"),
            (json!(1000.0000001), Allow, "not 1000"),
        ],
    );
    deny_if_cases("eq", json!(0), &[(json!(-0.0), Deny, "-0 equals 0")]);
    deny_if_cases(
        "in",
        json!([9_007_199_254_740_993u64]),
        &[
            (
                json!(9_007_199_254_740_992u64),
                Allow,
                "2^53 is not 2^53 + 1: integers are never rounded through floats",
            ),
            (json!(9_007_199_254_740_993u64), Deny, "the same integer"),
            (json!(9_007_199_254_740_992.0), Allow, "the float 2^53 is not 2^53 + 1"),
        ],
    );
}

#[test]
fn type_confusion_never_passes_a_requirement() {
    let e = evaluator(json!({"version": "1", "default": "deny", "tools": {"t": {
        "require": [{"conditions": [{"path": "args.v", "op": "lte", "value": 100}]}]}}}));
    for v in [json!("50"), json!([50]), json!({"v": 50}), json!(null), json!(true), json!("")] {
        assert_eq!(decide(&e, "t", &json!({ "v": v })), Deny, "{v}: only a number can meet `lte`");
    }
    assert_eq!(decide(&e, "t", &json!({})), Deny, "absent: unknown");
    assert_eq!(decide(&e, "t", &json!({"v": 50})), Allow);
}

#[test]
fn path_tricks_do_not_escape_within() {
    let e = evaluator(json!({"version": "1", "default": "deny", "tools": {"read_file": {
        "require": [{"conditions": [{"path": "args.path", "op": "within", "value": "/srv/data"}]}]}}}));
    for (path, expect, why) in [
        ("/srv/data/report.csv", Allow, "inside"),
        ("/srv/data", Allow, "the directory itself"),
        ("/srv/data/", Allow, "a trailing slash is dropped"),
        ("//srv///data//x", Allow, "repeated slashes fold"),
        ("/srv/./data/./x", Allow, "`.` segments drop"),
        ("/srv/data/../etc/passwd", Deny, "`..` leaves the directory"),
        ("/srv/data/x/../../data2/y", Deny, "`..` twice, then a sibling with a common prefix"),
        ("/srv/data/..", Deny, "the parent"),
        ("/srv/database/x", Deny, "a prefix of the name is not the directory"),
        ("/../../../srv/data/x", Allow, "`..` at the root stays at the root"),
        (
            "/srv/data\\..\\..\\etc",
            Deny,
            "a backslash is an ordinary character: `data\\..\\..\\etc` is not `data`",
        ),
        ("srv/data/x", Deny, "a relative path is unknown"),
        ("\\srv\\data\\x", Deny, "backslashes do not make it absolute"),
        ("", Deny, "empty: relative"),
        ("/srv/data\u{0}/x", Deny, "a NUL makes another component"),
    ] {
        assert_eq!(decide(&e, "read_file", &json!({ "path": path })), expect, "{path:?}: {why}");
    }
    assert_eq!(
        decide(&e, "read_file", &json!({"path": ["/srv/data/x"]})),
        Deny,
        "an array is not a path"
    );
}

#[test]
fn look_alike_tool_names_are_other_tools() {
    // Matching is byte-exact: a look-alike never takes the rules of the tool it imitates.
    let deny = evaluator(json!({"version": "1", "default": "deny", "tools": {"cancel_run": {}}}));
    for name in [
        "cancel_run\u{200b}",
        "c\u{0430}ncel_run",
        "cancel_run ",
        "CANCEL_RUN",
        "cancel\u{2011}run",
        "cancel_run\u{0}",
    ] {
        assert_eq!(
            decide(&deny, name, &json!({})),
            Deny,
            "{name:?} is not cancel_run: the default denies it"
        );
    }
    // The flip side, documented in docs/security.md: under `default: allow`, `hide` does not
    // hide look-alikes either. Only `default: deny` is safe against tool names the agent picks.
    let allow = evaluator(json!({"version": "1", "default": "allow", "hide": ["delete_*"]}));
    assert_eq!(decide(&allow, "delete_job", &json!({})), Deny);
    assert_eq!(
        decide(&allow, "d\u{0435}lete_job", &json!({})),
        Allow,
        "a Cyrillic `е` is another tool"
    );
}

#[test]
fn tool_names_with_slash_and_tilde() {
    let e =
        evaluator(json!({"version": "1", "default": "deny", "tools": {"a/b~c": {}, "x~1y": {}}}));
    let d = e.evaluate(&ToolCall::new("a/b~c"));
    assert_eq!((d.kind(), d.rule().into_owned()), (Allow, "/tools/a~1b~0c".to_owned()));
    assert_eq!(decide(&e, "a~1b~0c", &json!({})), Deny, "the escaped form is another name");
    assert_eq!(decide(&e, "x/y", &json!({})), Deny, "a key `x~1y` is the literal name `x~1y`");
    assert_eq!(decide(&e, "x~1y", &json!({})), Allow);
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    // A 100,000-level document: the loader stops at 128 levels.
    let text = format!(
        "{{\"version\": \"1\", \"default\": \"deny\", \"description\": {}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let err = Policy::from_json_str(&text).unwrap_err();
    assert!(err.diagnostics()[0].message().contains("nested more than 128 levels"));

    // 100,000-level arguments, built in memory (serde_json's parser would refuse them): denied
    // before any step that walks them recursively. Built and dropped on a thread with a large
    // stack, because serde_json drops values recursively.
    std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(|| {
            let mut deep = json!(1);
            for _ in 0..100_000 {
                deep = Value::Array(vec![deep]);
            }
            let args = json!({ "v": deep });
            let e = evaluator(json!({"version": "1", "default": "deny", "tools": {
                "schema": {"arguments": {"type": "object", "properties": {"v": {"$ref": "#/$defs/n"}},
                           "$defs": {"n": {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#/$defs/n"}}]}}}},
                "approve": {"approve_if": [{"conditions": []}]},
                "plain": {"deny_if": [{"conditions": [{"path": "args.v", "op": "eq", "value": [[1]]}]}]}}}));
            let d = e.evaluate(&ToolCall::new("schema").with_arguments(&args));
            assert_eq!(d.kind(), Deny);
            assert!(d.message().contains("nested more than 128 levels"), "{}", d.message());
            assert_eq!(decide(&e, "approve", &args), Deny, "no approval key for what cannot be hashed safely");
            // Conditions compare against the policy's own (shallow) values: no deep walk.
            assert_eq!(decide(&e, "plain", &args), Allow);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn ten_megabyte_strings() {
    let big = "a".repeat(10 << 20);
    let e = evaluator(json!({"version": "1", "default": "deny", "tools": {"t": {
    "deny_if": [
        {"conditions": [{"path": "args.s", "op": "regex", "value": "(a+)+$"}], "on_deny": "regex"},
        {"conditions": [{"path": "args.s", "op": "contains", "value": "needle"}], "on_deny": "contains"}
    ]}}}));
    // `(a+)+$`, the classic catastrophic-backtracking pattern, runs in linear time in Rust's
    // regex engine: it matches, so the call is denied.
    let args = json!({ "s": big });
    let d = e.evaluate(&ToolCall::new("t").with_arguments(&args));
    assert_eq!((d.kind(), d.message()), (Deny, "regex"));
    // Against a string where backtracking engines blow up (no match at the end).
    let nomatch = format!("{}!", "a".repeat(100_000));
    let e2 = evaluator(json!({"version": "1", "default": "deny", "tools": {"t": {
        "deny_if": [{"conditions": [{"path": "args.s", "op": "regex", "value": "^(a+)+$"}]}]}}}));
    assert_eq!(decide(&e2, "t", &json!({ "s": nomatch })), Allow);
    // A 10 MB path under `within`, a 10 MB tool name.
    let e3 = evaluator(json!({"version": "1", "default": "deny", "tools": {"t": {
        "require": [{"conditions": [{"path": "args.p", "op": "within", "value": "/srv"}]}]}}}));
    let path = format!("/srv/{}", "x/".repeat(5 << 20));
    assert_eq!(decide(&e3, "t", &json!({ "p": path })), Allow);
    let name = "t".repeat(10 << 20);
    assert_eq!(decide(&e3, &name, &json!({})), Deny);
}

#[test]
fn regexes_too_big_to_compile_are_load_errors() {
    let doc = json!({"version": "1", "default": "deny", "tools": {"t": {
        "deny_if": [{"conditions": [{"path": "args.s", "op": "regex", "value": "(\\w{100}){100}"}]}]}}});
    let err = Policy::from_json_str(&doc.to_string()).unwrap_err();
    assert!(
        err.diagnostics()[0].message().starts_with("invalid regex"),
        "{}",
        err.diagnostics()[0].message()
    );
}

#[test]
fn spend_caps_resist_odd_amounts() {
    let e = evaluator(json!({"version": "1", "default": "deny", "tools": {"pay": {"limits": [
        {"counter": "spend", "window": "day", "max": 1000, "increment_from": "args.amount"}]}}}));
    for (amount, expect, why) in [
        (json!(-5), Deny, "negative amounts would refund the cap"),
        (json!(-0.0001), Deny, "a tiny negative amount"),
        (json!("100"), Deny, "a string amount is not a number"),
        (json!(null), Deny, "null is not a number"),
        (json!(1e300), Deny, "above max can never be admitted"),
        (json!(18_446_744_073_709_551_615u64), Deny, "u64::MAX is above max"),
        (json!(999.0001), Allow, "rounded up to 1000: exactly the cap"),
        (json!(0.5), Limit, "rounded up to 1, and the cap is spent: limited until tomorrow"),
    ] {
        assert_eq!(decide(&e, "pay", &json!({ "amount": amount })), expect, "{amount}: {why}");
    }
}

#[test]
fn grants_and_sessions_cannot_share_a_count_by_spelling() {
    let e = evaluator(json!({"version": "1", "default": "deny", "tools": {"t": {"limits": [
        {"counter": "c", "window": "minute", "max": 1, "scope": "session"}]}}}));
    let calls = [
        ("g", None),
        ("g", Some("")),
        ("g\u{0}", None),
        ("g", Some("\u{0}")),
        ("", Some("g")),
        ("g:", None),
    ];
    for (grant, session) in calls {
        let d = e.evaluate(&ToolCall::new("t").with_grant(grant).with_optional_session(session));
        assert_eq!(d.kind(), Allow, "{grant:?}/{session:?} has a count of its own");
    }
}

#[test]
fn forged_and_replayed_approval_keys_are_refused() {
    let e = evaluator(
        json!({"version": "1", "default": "deny", "tools": {"t": {"approve_if": [{"conditions": []}]}}}),
    );
    let args = json!({"x": 1});
    let call = ToolCall::new("t").with_arguments(&args).with_grant("g");
    for forged in ["", "0", &"0".repeat(64), &"f".repeat(10_000)] {
        assert_eq!(e.evaluate(&call.with_approval_key(forged)).kind(), Deny, "{forged:.20}");
    }
    let key = e.evaluate(&call).approval_key().unwrap().to_owned();
    assert_eq!(
        e.evaluate(&call.with_approval_key(&key.to_uppercase())).kind(),
        Deny,
        "keys are exact"
    );
    assert_eq!(e.evaluate(&call.with_approval_key(&key)).kind(), Allow);
    assert_eq!(e.evaluate(&call.with_approval_key(&key)).kind(), Deny, "replayed");
}
