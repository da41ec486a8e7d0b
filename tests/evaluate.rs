//! The evaluation rules of the policy language (sections 2 to 7), one test or more per rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use mcp_policy::{
    ChargeOutcome, ChargeRequest, CounterStore, DecisionKind, Evaluator, ManualClock, Policy,
    StoreError, Timestamp, ToolCall,
};
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z, a whole day, hour and minute.
const T0: f64 = 1_767_225_600.0;

fn policy(doc: Value) -> Policy {
    Policy::from_json_str(&doc.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

struct Harness {
    evaluator: Evaluator,
    clock: Arc<ManualClock>,
}

fn harness(doc: Value) -> Harness {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(T0)));
    let evaluator = Evaluator::new(policy(doc)).with_clock(clock.clone());
    Harness { evaluator, clock }
}

impl Harness {
    fn at(&self, seconds_after_t0: f64) {
        self.clock.set(Timestamp::from_unix_seconds(T0 + seconds_after_t0));
    }

    /// (kind, rule) of a call of `tool` with `args` by grant `g`.
    fn decide(&self, tool: &str, args: Value) -> (DecisionKind, String) {
        let call = ToolCall::new(tool).with_arguments(&args).with_grant("g");
        let d = self.evaluator.evaluate(&call);
        (d.kind(), d.rule().into_owned())
    }

    fn json(&self, call: &ToolCall<'_>) -> Value {
        serde_json::to_value(self.evaluator.evaluate(call)).unwrap()
    }

    fn kind(&self, tool: &str, args: Value) -> DecisionKind {
        self.decide(tool, args).0
    }
}

use DecisionKind::{Allow, Approve, Deny, Limit};

// ----------------------------------------------------------------- section 2: tool patterns

#[test]
fn exact_key_beats_patterns_and_longer_patterns_beat_shorter() {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {
        "*": {"deny_if": [{"conditions": []}]},
        "list_*": {},
        "list_secret*": {"deny_if": [{"conditions": []}]},
        "list_secrets": {}
    }}));
    assert_eq!(h.decide("list_jobs", json!({})), (Allow, "/tools/list_*".into()));
    assert_eq!(
        h.decide("list_secret_keys", json!({})),
        (Deny, "/tools/list_secret*/deny_if/0".into())
    );
    assert_eq!(h.decide("list_secrets", json!({})), (Allow, "/tools/list_secrets".into()));
    assert_eq!(h.decide("other", json!({})), (Deny, "/tools/*/deny_if/0".into()));
}

#[test]
fn matching_is_case_sensitive_and_byte_exact() {
    let h = harness(
        json!({"version": "1", "default": "deny", "tools": {"list_jobs": {}, "get_*": {}}}),
    );
    assert_eq!(h.kind("list_jobs", json!({})), Allow);
    for name in
        ["List_jobs", "list_jobs ", " list_jobs", "list_jobs\u{200b}", "list_job\u{0455}", "GET_x"]
    {
        assert_eq!(h.kind(name, json!({})), Deny, "{name:?}");
    }
}

#[test]
fn tool_keys_are_escaped_in_rule_pointers() {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {"a/b~c": {}, "x/*": {}}}));
    assert_eq!(h.decide("a/b~c", json!({})), (Allow, "/tools/a~1b~0c".into()));
    assert_eq!(h.decide("x/y", json!({})), (Allow, "/tools/x~1*".into()));
}

#[test]
fn hide_denies_with_the_first_matching_entry_and_beats_rules() {
    let h = harness(json!({"version": "1", "default": "allow",
        "hide": ["dbfs_*", "delete_job", "*"],
        "tools": {"delete_job": {}}}));
    assert_eq!(h.decide("dbfs_delete", json!({})), (Deny, "/hide/0".into()));
    assert_eq!(h.decide("delete_job", json!({})), (Deny, "/hide/1".into()));
    assert_eq!(h.decide("anything", json!({})), (Deny, "/hide/2".into()));
    let p = h.evaluator.policy();
    assert!(!p.is_visible("delete_job"));
}

#[test]
fn visibility_follows_hide_rules_and_default() {
    let deny = policy(json!({"version": "1", "default": "deny", "hide": ["x_*"],
        "tools": {"a": {}, "b": {"deny_if": [{"conditions": []}]}, "x_1": {}}}));
    assert!(deny.is_visible("a"));
    assert!(deny.is_visible("b"), "explicit rules stay visible");
    assert!(!deny.is_visible("x_1"), "hidden");
    assert!(!deny.is_visible("c"), "only the default names it");
    let allow = policy(json!({"version": "1", "default": "allow"}));
    assert!(allow.is_visible("c"));
}

// ------------------------------------------------------------------ section 5: order, default

#[test]
fn default_deny_and_default_allow() {
    let h = harness(json!({"version": "1", "default": "deny"}));
    assert_eq!(h.decide("t", json!({})), (Deny, "/default".into()));
    let h = harness(json!({"version": "1", "default": "allow",
        "all_tools": {"deny_if": [{"conditions": [{"path": "args.bad", "op": "exists"}]}]}}));
    assert_eq!(h.decide("t", json!({})), (Allow, "/default".into()));
    assert_eq!(h.decide("t", json!({"bad": 1})), (Deny, "/all_tools/deny_if/0".into()));
}

#[test]
fn all_tools_does_not_apply_to_calls_already_denied() {
    let h = harness(json!({"version": "1", "default": "deny",
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 1}]},
        "hide": ["h"], "tools": {"t": {}}}));
    // Neither a hidden nor a default-denied call charges `calls`.
    assert_eq!(h.kind("h", json!({})), Deny);
    assert_eq!(h.kind("other", json!({})), Deny);
    assert_eq!(h.kind("t", json!({})), Allow);
    assert_eq!(h.decide("t", json!({})), (Limit, "/all_tools/limits/0".into()));
}

#[test]
fn steps_run_in_order_and_the_tool_comes_before_all_tools() {
    let rule = |n: &str| {
        json!({
            "arguments": {"type": "object", "required": [format!("{n}_arg")]},
            "require": [{"conditions": [{"path": format!("args.{n}_req"), "op": "exists"}]}],
            "deny_if": [{"conditions": [{"path": format!("args.{n}_deny"), "op": "exists"}]}],
            "approve_if": [{"conditions": [{"path": format!("args.{n}_approve"), "op": "exists"}]}],
            "limits": [{"counter": format!("{n}_c"), "window": "minute", "max": 1}]
        })
    };
    let h = harness(
        json!({"version": "1", "default": "deny", "all_tools": rule("all"), "tools": {"t": rule("t")}}),
    );
    let base = json!({"t_arg": 1, "all_arg": 1, "t_req": 1, "all_req": 1});
    let with = |extra: &[&str]| {
        let mut v = base.clone();
        for k in extra {
            v[*k] = json!(1);
        }
        v
    };
    // Arguments of the tool first, then of all_tools.
    assert_eq!(h.decide("t", json!({})).1, "/tools/t/arguments");
    assert_eq!(h.decide("t", json!({"t_arg": 1})).1, "/all_tools/arguments");
    // require before deny_if before approve_if; tool before all_tools at each step.
    assert_eq!(
        h.decide("t", json!({"t_arg": 1, "all_arg": 1, "t_deny": 1})).1,
        "/tools/t/require/0"
    );
    assert_eq!(
        h.decide("t", json!({"t_arg": 1, "all_arg": 1, "t_req": 1, "t_deny": 1})).1,
        "/all_tools/require/0"
    );
    assert_eq!(
        h.decide("t", with(&["all_deny", "t_approve"])),
        (Deny, "/all_tools/deny_if/0".into())
    );
    assert_eq!(h.decide("t", with(&["t_deny", "all_deny"])), (Deny, "/tools/t/deny_if/0".into()));
    assert_eq!(
        h.decide("t", with(&["all_approve", "t_approve"])),
        (Approve, "/tools/t/approve_if/0".into())
    );
    assert_eq!(h.decide("t", with(&["all_approve"])), (Approve, "/all_tools/approve_if/0".into()));
    assert_eq!(h.decide("t", base.clone()), (Allow, "/tools/t".into()));
    assert_eq!(h.decide("t", base), (Limit, "/tools/t/limits/0".into()));
}

#[test]
fn arguments_schema_names_the_failing_argument() {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {"create_cluster": {
        "arguments": {"type": "object", "properties": {"cluster": {"type": "object",
            "properties": {"num_workers": {"type": "integer", "maximum": 8}}}}}}}}));
    let args = json!({"cluster": {"num_workers": 100}});
    let d = h.evaluator.evaluate(&ToolCall::new("create_cluster").with_arguments(&args));
    assert_eq!(d.kind(), Deny);
    assert_eq!(d.rule(), "/tools/create_cluster/arguments");
    assert!(d.message().contains("`/cluster/num_workers`"), "{}", d.message());
    assert_eq!(h.kind("create_cluster", json!({"cluster": {"num_workers": 8}})), Allow);
    // Absent arguments read as {}.
    let d = h.evaluator.evaluate(&ToolCall::new("create_cluster"));
    assert_eq!(d.kind(), Allow);
}

#[test]
fn malformed_calls_are_denied() {
    let h = harness(json!({"version": "1", "default": "allow"}));
    for args in [json!([1]), json!("x"), json!(null), json!(3)] {
        let d = h.evaluator.evaluate(&ToolCall::new("t").with_arguments(&args));
        assert_eq!(d.kind(), Deny, "{args}");
        assert_eq!(d.rule(), "");
        assert!(
            d.message().starts_with("malformed call: `arguments` must be a JSON object"),
            "{}",
            d.message()
        );
    }
    let ctx = json!("admin");
    let d = h.evaluator.evaluate(&ToolCall::new("t").with_context(&ctx));
    assert!(d.message().contains("`context` must be a JSON object"));
}

// ---------------------------------------------------------- section 3: checks and conditions

/// The decision of a `deny_if` check with one condition on `args.v`, for the value `v`
/// (`None`: `v` absent).
fn deny_if(op: &str, operand: Value, v: Option<Value>) -> DecisionKind {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {"t": {
        "deny_if": [{"conditions": [{"path": "args.v", "op": op, "value": operand}]}]}}}));
    let args = match v {
        Some(v) => json!({ "v": v }),
        None => json!({}),
    };
    h.kind("t", args)
}

/// The decision of a `require` check with one condition on `args.v`.
fn require(op: &str, operand: Value, v: Option<Value>) -> DecisionKind {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {"t": {
        "require": [{"conditions": [{"path": "args.v", "op": op, "value": operand}]}]}}}));
    let args = match v {
        Some(v) => json!({ "v": v }),
        None => json!({}),
    };
    h.kind("t", args)
}

/// Asserts a condition is true (`deny_if` denies, `require` allows), false (the reverse) or
/// unknown (both deny).
fn assert_truth(op: &str, operand: Value, v: Option<Value>, expected: &str) {
    let got =
        match (deny_if(op, operand.clone(), v.clone()), require(op, operand.clone(), v.clone())) {
            (Deny, Allow) => "true",
            (Allow, Deny) => "false",
            (Deny, Deny) => "unknown",
            other => panic!("impossible {other:?}"),
        };
    assert_eq!(got, expected, "{op} {operand} on {v:?}");
}

#[test]
fn eq_and_neq_compare_numbers_numerically_at_every_depth() {
    assert_truth("eq", json!(1), Some(json!(1.0)), "true");
    assert_truth("eq", json!({"a": [1, 2.0]}), Some(json!({"a": [1.0, 2]})), "true");
    // Another JSON type than the operand: unknown (language §3), so `deny_if` fires.
    assert_truth("eq", json!("1"), Some(json!(1)), "unknown");
    assert_truth("neq", json!("1"), Some(json!(1)), "unknown");
    assert_truth("eq", json!("a"), Some(json!(["a"])), "unknown");
    assert_truth("eq", json!("a"), Some(json!(null)), "false");
    assert_truth(
        "eq",
        json!(9_007_199_254_740_993u64),
        Some(json!(9_007_199_254_740_992u64)),
        "false",
    );
    assert_truth("eq", json!(null), None, "true");
    assert_truth("eq", json!(null), Some(json!(null)), "true");
    assert_truth("neq", json!("safe"), None, "true");
    assert_truth("neq", json!("safe"), Some(json!("safe")), "false");
    assert_truth("eq", json!(-0.0), Some(json!(0)), "true");
}

#[test]
fn in_and_not_in() {
    assert_truth("in", json!(["a", 2]), Some(json!(2.0)), "true");
    assert_truth("in", json!(["a", 2]), Some(json!("b")), "false");
    assert_truth("in", json!([null]), None, "true");
    assert_truth("in", json!(["a"]), None, "false");
    assert_truth("in", json!(["a"]), Some(json!(["a"])), "unknown");
    assert_truth("not_in", json!(["a"]), Some(json!(1)), "unknown");
    assert_truth("not_in", json!(["a"]), Some(json!("b")), "true");
    assert_truth("not_in", json!(["a"]), Some(json!("a")), "false");
}

#[test]
fn numeric_comparisons_take_numbers_only() {
    assert_truth("gt", json!(10000), Some(json!(10001)), "true");
    assert_truth("gt", json!(10000), Some(json!(10000)), "false");
    assert_truth("gte", json!(10000), Some(json!(10000.0)), "true");
    assert_truth("lt", json!(0.5), Some(json!(0)), "true");
    assert_truth("lte", json!(-1), Some(json!(-1)), "true");
    assert_truth("gt", json!(10000), Some(json!(1e300)), "true");
    // A number as a string, absent, null, bool: unknown, so `deny_if` denies and `require` fails.
    for v in [Some(json!("99999")), None, Some(json!(null)), Some(json!(true)), Some(json!([1]))] {
        assert_truth("gt", json!(10000), v, "unknown");
    }
    assert_truth("gt", json!(u64::MAX - 1), Some(json!(u64::MAX)), "true");
    assert_truth("lt", json!(i64::MIN + 1), Some(json!(i64::MIN)), "true");
}

#[test]
fn contains_on_strings_and_arrays() {
    assert_truth("contains", json!("prod"), Some(json!("my-prod-db")), "true");
    assert_truth("contains", json!("prod"), Some(json!("dev")), "false");
    assert_truth("contains", json!(1), Some(json!("123")), "unknown");
    assert_truth("contains", json!(1), Some(json!([3, 1.0])), "true");
    assert_truth("contains", json!({"a": 1}), Some(json!([{"a": 1.0}])), "true");
    assert_truth("contains", json!("x"), Some(json!(["y"])), "false");
    assert_truth("contains", json!("x"), Some(json!({"x": 1})), "unknown");
    assert_truth("contains", json!("x"), None, "unknown");
}

#[test]
fn starts_with_ends_with_and_regex_take_strings_only() {
    assert_truth("starts_with", json!("EXT-"), Some(json!("EXT-1")), "true");
    assert_truth("starts_with", json!("EXT-"), Some(json!("ext-1")), "false");
    assert_truth("starts_with", json!("1"), Some(json!(123)), "unknown");
    assert_truth("ends_with", json!(".sql"), Some(json!("a.sql")), "true");
    assert_truth("ends_with", json!(".sql"), None, "unknown");
    assert_truth("regex", json!("(?i)\\bdrop\\b"), Some(json!("x; DROP table")), "true");
    assert_truth("regex", json!("^select"), Some(json!("  select")), "false");
    assert_truth("regex", json!("1"), Some(json!(1)), "unknown");
}

#[test]
fn exists_and_explicit_null() {
    assert_truth("exists", json!(true), Some(json!(null)), "true");
    assert_truth("exists", json!(true), None, "false");
    assert_truth("exists", json!(false), None, "true");
    assert_truth("exists", json!(false), Some(json!(0)), "false");
    // `value` may be left out of `exists`.
    let h = harness(json!({"version": "1", "default": "deny", "tools": {"t": {
        "require": [{"conditions": [{"path": "args.v", "op": "exists"}]}]}}}));
    assert_eq!(h.kind("t", json!({"v": 1})), Allow);
    assert_eq!(h.kind("t", json!({})), Deny);
}

#[test]
fn within_normalises_lexically() {
    let dirs = json!(["/srv/data", "/tmp/"]);
    assert_truth("within", dirs.clone(), Some(json!("/srv/data")), "true");
    assert_truth("within", dirs.clone(), Some(json!("/srv/data/")), "true");
    assert_truth("within", dirs.clone(), Some(json!("/srv/data/a/../b//c/.")), "true");
    assert_truth("within", dirs.clone(), Some(json!("//srv///data/x")), "true");
    assert_truth("within", dirs.clone(), Some(json!("/tmp/x")), "true");
    assert_truth("within", dirs.clone(), Some(json!("/srv/data/../secrets")), "false");
    assert_truth("within", dirs.clone(), Some(json!("/srv/database")), "false");
    assert_truth("within", dirs.clone(), Some(json!("/../../srv/data/x")), "true");
    // A backslash is an ordinary character: `x\..\..\etc` is one component inside /srv/data,
    // and `data\..` is not `data`.
    assert_truth("within", dirs.clone(), Some(json!("/srv/data/x\\..\\..\\etc")), "true");
    assert_truth("within", dirs.clone(), Some(json!("/srv/data\\..\\..\\etc")), "false");
    assert_truth("within", dirs.clone(), Some(json!("/etc/passwd")), "false");
    assert_truth("within", dirs.clone(), Some(json!("srv/data/x")), "unknown");
    assert_truth("within", dirs.clone(), Some(json!(null)), "unknown");
    assert_truth("within", dirs, None, "unknown");
    // Directories are normalised at load too.
    assert_truth("within", json!("/srv/./data/../data//"), Some(json!("/srv/data/f")), "true");
    assert_truth("within", json!("/"), Some(json!("/anything")), "true");
}

#[test]
fn a_check_is_false_when_any_condition_is_false_else_unknown_when_any_is_unknown() {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {"t": {
    "deny_if": [{"conditions": [
        {"path": "args.amount", "op": "exists"},
        {"path": "args.amount", "op": "gt", "value": 10000}
    ]}]}}}));
    assert_eq!(h.kind("t", json!({})), Allow, "absent: `exists` is false, so the check is false");
    assert_eq!(h.kind("t", json!({"amount": 5})), Allow);
    assert_eq!(h.kind("t", json!({"amount": 50000})), Deny);
    assert_eq!(h.kind("t", json!({"amount": "99999"})), Deny, "exists true, gt unknown: unknown");
}

#[test]
fn empty_conditions_always_match() {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {
        "d": {"deny_if": [{"conditions": [], "on_deny": "never"}]},
        "r": {"require": [{"conditions": []}]},
        "a": {"approve_if": [{"conditions": []}]}}}));
    assert_eq!(h.decide("d", json!({})), (Deny, "/tools/d/deny_if/0".into()));
    assert_eq!(h.kind("r", json!({})), Allow);
    assert_eq!(h.kind("a", json!({})), Approve);
}

#[test]
fn messages_come_from_on_deny_and_reason() {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {"t": {
        "require": [{"name": "ticket", "conditions": [{"path": "args.ticket", "op": "exists"}]}],
        "deny_if": [{"conditions": [{"path": "args.x", "op": "eq", "value": 1}], "on_deny": "x may not be 1"}],
        "approve_if": [{"conditions": [{"path": "args.x", "op": "eq", "value": 2}], "reason": "x=2 is risky"}]}}}));
    let msg = |args: Value| {
        let call = ToolCall::new("t").with_arguments(&args);
        h.evaluator.evaluate(&call).message().to_owned()
    };
    assert_eq!(msg(json!({})), "the call does not meet requirement `ticket`");
    assert_eq!(msg(json!({"ticket": 1, "x": 1})), "x may not be 1");
    assert_eq!(msg(json!({"ticket": 1, "x": 2})), "x=2 is risky");
}

#[test]
fn paths_read_every_part_of_the_call_document() {
    let h = harness(
        json!({"version": "1", "default": "deny", "tools": {"t": {"require": [{"conditions": [
            {"path": "tool", "op": "eq", "value": "t"},
            {"path": "grant", "op": "eq", "value": "alice"},
            {"path": "session", "op": "eq", "value": "s1"},
            {"path": "context.claims.role", "op": "eq", "value": "admin"},
            {"path": "/args/a.b/1", "op": "eq", "value": "second"},
            {"path": "args.list.0.name", "op": "eq", "value": "n"},
            {"path": "args.obj.0", "op": "eq", "value": "key zero"},
            {"path": "args.list.01", "op": "exists", "value": false}
        ]}]}}}),
    );
    let args =
        json!({"a.b": ["first", "second"], "list": [{"name": "n"}], "obj": {"0": "key zero"}});
    let ctx = json!({"claims": {"role": "admin"}});
    let call = ToolCall::new("t")
        .with_arguments(&args)
        .with_grant("alice")
        .with_session("s1")
        .with_context(&ctx);
    assert_eq!(h.evaluator.evaluate(&call).kind(), Allow);
    let other = ToolCall::new("t")
        .with_arguments(&args)
        .with_grant("bob")
        .with_session("s1")
        .with_context(&ctx);
    assert_eq!(h.evaluator.evaluate(&other).kind(), Deny);
    // No session reads as an explicit null; no context as {}.
    let h = harness(
        json!({"version": "1", "default": "deny", "tools": {"t": {"require": [{"conditions": [
            {"path": "session", "op": "exists"}, {"path": "session", "op": "eq", "value": null},
            {"path": "context", "op": "eq", "value": {}}, {"path": "grant", "op": "eq", "value": ""}
        ]}]}}}),
    );
    assert_eq!(h.evaluator.evaluate(&ToolCall::new("t")).kind(), Allow);
}

// ------------------------------------------------------------------------- section 4: limits

fn limited(limit: Value) -> Harness {
    harness(json!({"version": "1", "default": "deny", "tools": {"t": {"limits": [limit]}}}))
}

#[test]
fn exactly_max_per_fixed_window_then_limit_with_retry_after() {
    let h = limited(json!({"counter": "c", "window": "minute", "max": 10}));
    h.at(15.5);
    for i in 0..10 {
        assert_eq!(h.kind("t", json!({})), Allow, "call {i}");
    }
    let call = ToolCall::new("t").with_grant("g");
    let d = h.evaluator.evaluate(&call);
    assert_eq!(d.kind(), Limit);
    assert_eq!(d.rule(), "/tools/t/limits/0");
    assert_eq!(d.retry_after(), Some(Duration::from_millis(44_500)));
    assert_eq!(h.json(&call)["retry_after"], json!(44.5));
    // The window ends at the whole minute: the next call at 60 s is admitted.
    h.at(59.999);
    assert_eq!(h.kind("t", json!({})), Limit);
    h.at(60.0);
    assert_eq!(h.kind("t", json!({})), Allow);
}

#[test]
fn windows_of_n_seconds_and_days_align_to_the_epoch() {
    let h = limited(json!({"counter": "c", "window": 7, "max": 1}));
    // T0 is a multiple of 7? Compute the boundary from the epoch instead.
    let t0 = T0 as u64;
    let next = (t0 / 7 + 1) * 7 - t0;
    assert_eq!(h.kind("t", json!({})), Allow);
    h.at(next as f64 - 0.001);
    assert_eq!(h.kind("t", json!({})), Limit);
    h.at(next as f64);
    assert_eq!(h.kind("t", json!({})), Allow);

    let h = limited(json!({"counter": "c", "window": "day", "max": 1}));
    h.at(86_399.0);
    assert_eq!(h.kind("t", json!({})), Allow);
    let call = ToolCall::new("t").with_grant("g");
    assert_eq!(h.evaluator.evaluate(&call).retry_after(), Some(Duration::from_secs(1)));
    h.at(86_400.0); // 00:00 UTC
    assert_eq!(h.kind("t", json!({})), Allow);
}

#[test]
fn sliding_windows_admit_at_most_max_in_any_interval() {
    let h = limited(json!({"counter": "c", "window": 16, "max": 2, "sliding": true}));
    h.at(0.0);
    assert_eq!(h.kind("t", json!({})), Allow);
    h.at(8.0);
    assert_eq!(h.kind("t", json!({})), Allow);
    // A fixed window would have restarted at 16; the sliding one still counts both.
    h.at(15.0);
    assert_eq!(h.kind("t", json!({})), Limit);
    let call = ToolCall::new("t").with_grant("g");
    // The unit charged at 0 (bucket [0, 1)) counts until 1 + 16 = 17.
    assert_eq!(h.evaluator.evaluate(&call).retry_after(), Some(Duration::from_secs(2)));
    h.at(16.5);
    assert_eq!(h.kind("t", json!({})), Limit, "conservative: at most one bucket early");
    h.at(17.0);
    assert_eq!(h.kind("t", json!({})), Allow);
    h.at(20.0);
    assert_eq!(h.kind("t", json!({})), Limit);
}

#[test]
fn sliding_window_model_check_never_more_than_max_in_any_interval() {
    // Calls at pseudo-random times; every admitted set must have at most `max` in any window.
    let h = limited(json!({"counter": "c", "window": 10, "max": 3, "sliding": true}));
    let mut admitted: Vec<f64> = Vec::new();
    let mut t = 0.0f64;
    let mut seed = 12345u64;
    for _ in 0..2000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        t += (seed >> 33) as f64 / (1u64 << 31) as f64 * 2.0;
        h.at(t);
        if h.kind("t", json!({})) == Allow {
            admitted.push(t);
        }
    }
    for (i, a) in admitted.iter().enumerate() {
        let in_window = admitted[i..].iter().take_while(|b| **b < a + 10.0).count();
        assert!(in_window <= 3, "{in_window} calls in [{a}, {})", a + 10.0);
    }
    assert!(admitted.len() > 300, "too conservative: {}", admitted.len());
}

#[test]
fn limits_naming_one_counter_share_one_count_across_tools() {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {
        "a": {"limits": [{"counter": "writes", "window": "minute", "max": 3}]},
        "b": {"limits": [{"counter": "writes", "window": "minute", "max": 3}]}}}));
    assert_eq!(h.kind("a", json!({})), Allow);
    assert_eq!(h.kind("b", json!({})), Allow);
    assert_eq!(h.kind("a", json!({})), Allow);
    assert_eq!(h.kind("b", json!({})), Limit);
}

#[test]
fn all_tools_limits_count_every_call() {
    let h = harness(json!({"version": "1", "default": "allow",
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 2}]}}));
    assert_eq!(h.kind("x", json!({})), Allow);
    assert_eq!(h.kind("y", json!({})), Allow);
    assert_eq!(h.decide("z", json!({})), (Limit, "/all_tools/limits/0".into()));
}

#[test]
fn one_counter_in_two_limits_charges_both_and_checks_each_max() {
    // all_tools and the tool both name `calls`: a call of `t` charges 1 + 2 units.
    let h = harness(json!({"version": "1", "default": "allow",
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 10}]},
        "tools": {"t": {"limits": [{"counter": "calls", "window": "minute", "max": 6, "increment": 2}]}}}));
    assert_eq!(h.kind("t", json!({})), Allow); // 3
    assert_eq!(h.kind("t", json!({})), Allow); // 6
    // The tool's limit (checked first) sees 6 + 2 > 6.
    assert_eq!(h.decide("t", json!({})), (Limit, "/tools/t/limits/0".into()));
    // Other tools only charge all_tools' 1 unit against max 10.
    for _ in 0..4 {
        assert_eq!(h.kind("u", json!({})), Allow);
    }
    assert_eq!(h.decide("u", json!({})), (Limit, "/all_tools/limits/0".into()));
}

#[test]
fn units_beyond_max_within_one_call_deny() {
    let h = harness(json!({"version": "1", "default": "allow",
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 3, "increment": 2}]},
        "tools": {"t": {"limits": [{"counter": "calls", "window": "minute", "max": 3, "increment": 2}]}}}));
    let (kind, rule) = h.decide("t", json!({}));
    assert_eq!((kind, rule.as_str()), (Deny, "/all_tools/limits/0"));
}

#[test]
fn increment_charges_that_many_units() {
    let h = limited(json!({"counter": "c", "window": "minute", "max": 10, "increment": 4}));
    assert_eq!(h.kind("t", json!({})), Allow);
    assert_eq!(h.kind("t", json!({})), Allow);
    assert_eq!(h.kind("t", json!({})), Limit);
}

#[test]
fn increment_from_takes_units_from_the_call() {
    let h = limited(
        json!({"counter": "spend", "window": "day", "max": 100, "increment_from": "args.amount"}),
    );
    assert_eq!(h.kind("t", json!({"amount": 60})), Allow);
    assert_eq!(h.kind("t", json!({"amount": 39.2})), Allow, "rounded up to 40: 100 in all");
    assert_eq!(h.kind("t", json!({"amount": 0.001})), Limit, "rounded up to 1");
    assert_eq!(h.kind("t", json!({"amount": 0})), Allow, "zero units fit");
    for bad in [
        json!({}),
        json!({"amount": -5}),
        json!({"amount": -0.5}),
        json!({"amount": "10"}),
        json!({"amount": null}),
        json!({"amount": [1]}),
    ] {
        assert_eq!(
            h.decide("t", bad.clone()),
            (Deny, "/tools/t/limits/0/increment_from".into()),
            "{bad}"
        );
    }
    // More units than `max` can never be admitted: deny, naming the limit.
    let h = limited(
        json!({"counter": "spend", "window": "day", "max": 100, "increment_from": "args.amount"}),
    );
    assert_eq!(h.decide("t", json!({"amount": 101})), (Deny, "/tools/t/limits/0".into()));
    assert_eq!(h.decide("t", json!({"amount": 1e300})), (Deny, "/tools/t/limits/0".into()));
    assert_eq!(h.kind("t", json!({"amount": 100})), Allow);
}

#[test]
fn scopes_grant_session_and_global() {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {
        "g": {"limits": [{"counter": "g", "window": "minute", "max": 1, "scope": "grant"}]},
        "s": {"limits": [{"counter": "s", "window": "minute", "max": 1, "scope": "session"}]},
        "x": {"limits": [{"counter": "x", "window": "minute", "max": 1, "scope": "global"}]}}}));
    let call = |tool: &'static str, grant: &'static str, session: Option<&'static str>| {
        h.evaluator
            .evaluate(&ToolCall::new(tool).with_grant(grant).with_optional_session(session))
            .kind()
    };
    assert_eq!(call("g", "alice", Some("1")), Allow);
    assert_eq!(call("g", "alice", Some("2")), Limit);
    assert_eq!(call("g", "bob", None), Allow);

    assert_eq!(call("s", "alice", Some("1")), Allow);
    assert_eq!(call("s", "alice", Some("2")), Allow);
    assert_eq!(call("s", "alice", Some("1")), Limit);
    assert_eq!(call("s", "bob", Some("1")), Allow, "sessions are per grant");
    // No session: one shared bucket per grant, never unlimited.
    assert_eq!(call("s", "alice", None), Allow);
    assert_eq!(call("s", "alice", None), Limit);
    assert_eq!(call("s", "carol", None), Allow);

    assert_eq!(call("x", "alice", None), Allow);
    assert_eq!(call("x", "bob", Some("9")), Limit);
}

#[test]
fn refused_calls_charge_nothing() {
    let h = harness(json!({"version": "1", "default": "deny",
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 3}]},
        "tools": {"t": {
            "deny_if": [{"conditions": [{"path": "args.deny", "op": "exists"}]}],
            "approve_if": [{"conditions": [{"path": "args.approve", "op": "exists"}]}],
            "limits": [{"counter": "t", "window": "minute", "max": 1}]}}}));
    for _ in 0..5 {
        assert_eq!(h.kind("t", json!({"deny": 1})), Deny);
        assert_eq!(h.kind("t", json!({"approve": 1})), Approve);
    }
    assert_eq!(h.kind("t", json!({})), Allow); // calls = 1, t = 1
    for _ in 0..5 {
        assert_eq!(h.kind("t", json!({})), Limit, "t exhausted; calls must not move");
    }
    // `calls` was charged once only: two more calls of another counter-free path fit... via
    // a policy reload that keeps the count and lifts `t`.
    h.evaluator.reload(policy(json!({"version": "1", "default": "allow",
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 3}]}})));
    assert_eq!(h.kind("u", json!({})), Allow);
    assert_eq!(h.kind("u", json!({})), Allow);
    assert_eq!(h.kind("u", json!({})), Limit);
}

#[test]
fn rollback_returns_units_in_the_same_window_only() {
    let h = limited(json!({"counter": "c", "window": "minute", "max": 1}));
    let call = ToolCall::new("t").with_grant("g");
    let mut d = h.evaluator.evaluate(&call);
    assert!(d.has_charge());
    h.evaluator.rollback(&mut d).unwrap();
    assert!(!d.has_charge());
    h.evaluator.rollback(&mut d).unwrap(); // a second rollback does nothing
    let mut d = h.evaluator.evaluate(&call);
    assert_eq!(d.kind(), Allow);
    assert_eq!(h.evaluator.evaluate(&call).kind(), Limit);
    // In the next window, a rollback of the old call must not give the new window a unit.
    h.at(60.0);
    assert_eq!(h.evaluator.evaluate(&call).kind(), Allow);
    h.evaluator.rollback(&mut d).unwrap();
    assert_eq!(h.evaluator.evaluate(&call).kind(), Limit);
}

#[test]
fn rollback_after_a_reload_keeps_the_units() {
    let h = limited(json!({"counter": "c", "window": "minute", "max": 1}));
    let call = ToolCall::new("t").with_grant("g");
    let mut d = h.evaluator.evaluate(&call);
    h.evaluator
        .reload(policy(json!({"version": "1", "default": "deny", "tools": {"t": {"limits": [
        {"counter": "c", "window": "minute", "max": 1}]}}})));
    assert!(matches!(h.evaluator.rollback(&mut d), Err(mcp_policy::RollbackError::PolicyReloaded)));
    assert_eq!(h.evaluator.evaluate(&call).kind(), Limit);
}

#[test]
fn type_confused_arguments_never_pass() {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {"transfer": {
    "require": [{"conditions": [{"path": "args.amount", "op": "lte", "value": 100}]}],
    "deny_if": [
        {"conditions": [{"path": "args.to", "op": "starts_with", "value": "EXT-"}]},
        {"conditions": [{"path": "args.note", "op": "regex", "value": "(?i)urgent"}]}
    ]}}}));
    assert_eq!(h.kind("transfer", json!({"amount": 50, "to": "A-1", "note": "ok"})), Allow);
    for args in [
        json!({"amount": "50", "to": "A-1", "note": "ok"}),
        json!({"amount": [50], "to": "A-1", "note": "ok"}),
        json!({"amount": {"value": 50}, "to": "A-1", "note": "ok"}),
        json!({"amount": null, "to": "A-1", "note": "ok"}),
        json!({"amount": true, "to": "A-1", "note": "ok"}),
        json!({"to": "A-1", "note": "ok"}),
        json!({"amount": 50, "to": ["EXT-1"], "note": "ok"}),
        json!({"amount": 50, "to": 7, "note": "ok"}),
        json!({"amount": 50, "note": "ok"}),
        json!({"amount": 50, "to": "A-1", "note": {"text": "urgent"}}),
        json!({"amount": 50, "to": "A-1"}),
        json!({"amount": 1e3, "to": "A-1", "note": "ok"}),
    ] {
        assert_eq!(h.kind("transfer", args.clone()), Deny, "{args}");
    }
}

// ---------------------------------------------------------------------- section 6: approvals

fn approvals() -> Harness {
    harness(json!({"version": "1", "default": "deny", "tools": {"execute_sql": {
        "approve_if": [{"conditions": [{"path": "args.statement", "op": "regex", "value": "(?i)^delete"}],
                        "reason": "data-changing SQL needs a human"}],
        "limits": [{"counter": "sql", "window": "minute", "max": 2}]}}}))
}

#[test]
fn an_approved_call_passes_once() {
    let h = approvals();
    let args = json!({"statement": "DELETE FROM t WHERE id = 1"});
    let call =
        ToolCall::new("execute_sql").with_arguments(&args).with_grant("alice").with_session("s");
    let d = h.evaluator.evaluate(&call);
    assert_eq!(d.kind(), Approve);
    assert_eq!(d.rule(), "/tools/execute_sql/approve_if/0");
    assert_eq!(d.message(), "data-changing SQL needs a human");
    let key = d.approval_key().unwrap().to_owned();
    assert_eq!(key.len(), 64);
    let approved = call.with_approval_key(&key);
    assert_eq!(h.evaluator.evaluate(&approved).kind(), Allow);
    // Accepted once only.
    assert_eq!(h.evaluator.evaluate(&approved).kind(), Deny);
}

#[test]
fn an_approval_key_is_refused_for_any_other_call() {
    let h = approvals();
    let args = json!({"statement": "DELETE FROM t WHERE id = 1"});
    let call =
        ToolCall::new("execute_sql").with_arguments(&args).with_grant("alice").with_session("s");
    let key = h.evaluator.evaluate(&call).approval_key().unwrap().to_owned();

    let other_args = json!({"statement": "DELETE FROM t WHERE id = 2"});
    let changed = ToolCall::new("execute_sql")
        .with_arguments(&other_args)
        .with_grant("alice")
        .with_session("s");
    let other_grant = call.with_grant("mallory");
    let other_session = call.with_session("s2");
    for wrong in [changed, other_grant, other_session] {
        let d = h.evaluator.evaluate(&wrong.with_approval_key(&key));
        assert_eq!(d.kind(), Deny);
        assert!(d.message().contains("approval key is not valid"), "{}", d.message());
    }
    // A made-up key is refused too.
    assert_eq!(h.evaluator.evaluate(&call.with_approval_key("00")).kind(), Deny);
    // Another policy: the same document with another digest.
    h.evaluator.reload(policy(json!({"version": "1", "default": "deny", "description": "v2", "tools": {"execute_sql": {
        "approve_if": [{"conditions": [{"path": "args.statement", "op": "regex", "value": "(?i)^delete"}]}],
        "limits": [{"counter": "sql", "window": "minute", "max": 2}]}}})));
    assert_eq!(h.evaluator.evaluate(&call.with_approval_key(&key)).kind(), Deny);
}

#[test]
fn the_same_arguments_in_another_spelling_are_the_same_call() {
    let h = approvals();
    let a = json!({"statement": "DELETE FROM t", "limit": 1.0});
    let b = json!({"limit": 1, "statement": "DELETE FROM t"});
    let key = h
        .evaluator
        .evaluate(&ToolCall::new("execute_sql").with_arguments(&a))
        .approval_key()
        .unwrap()
        .to_owned();
    let d = h
        .evaluator
        .evaluate(&ToolCall::new("execute_sql").with_arguments(&b).with_approval_key(&key));
    assert_eq!(d.kind(), Allow);
}

#[test]
fn an_approved_call_still_meets_the_limits_and_keeps_its_key_when_limited() {
    let h = approvals();
    let args = json!({"statement": "delete from t"});
    let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("g");
    // Asked while the limit had room; the limit is exhausted before the human answers.
    let key = h.evaluator.evaluate(&call).approval_key().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(h.kind("execute_sql", json!({"statement": "select 1"})), Allow);
    }
    assert_eq!(h.evaluator.evaluate(&call.with_approval_key(&key)).kind(), Limit);
    h.at(60.0);
    assert_eq!(h.evaluator.evaluate(&call.with_approval_key(&key)).kind(), Allow);
}

#[test]
fn approval_keys_expire() {
    let h = approvals();
    let args = json!({"statement": "delete from t"});
    let call = ToolCall::new("execute_sql").with_arguments(&args);
    let key = h.evaluator.evaluate(&call).approval_key().unwrap().to_owned();
    h.at(3601.0);
    assert_eq!(h.evaluator.evaluate(&call.with_approval_key(&key)).kind(), Deny);
}

#[test]
fn an_approval_does_not_skip_earlier_steps() {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {"t": {
        "deny_if": [{"conditions": [{"path": "args.x", "op": "eq", "value": "bad"}]}],
        "approve_if": [{"conditions": []}]}}}));
    let args = json!({"x": "bad"});
    let call = ToolCall::new("t").with_arguments(&args);
    assert_eq!(h.evaluator.evaluate(&call).kind(), Deny);
    assert_eq!(h.evaluator.evaluate(&call.with_approval_key("whatever")).kind(), Deny);
}

// -------------------------------------------------------------- section 7: decision as JSON

#[test]
fn decision_json_has_exactly_the_documented_shape() {
    let h = harness(json!({"version": "1", "default": "deny", "tools": {
        "ok": {},
        "lim": {"limits": [{"counter": "c", "window": "minute", "max": 1}]},
        "ask": {"approve_if": [{"conditions": [], "reason": "why"}]}}}));
    let allow = h.json(&ToolCall::new("ok"));
    assert_eq!(
        allow,
        json!({"decision": "allow", "tool": "ok", "rule": "/tools/ok", "message": "allowed"})
    );
    let deny = h.json(&ToolCall::new("nope"));
    assert_eq!(deny["decision"], "deny");
    assert_eq!(deny.as_object().unwrap().len(), 4);
    h.json(&ToolCall::new("lim"));
    let limit = h.json(&ToolCall::new("lim"));
    assert_eq!(limit["decision"], "limit");
    assert_eq!(limit["retry_after"], json!(60.0));
    assert_eq!(limit.as_object().unwrap().len(), 5);
    let approve = h.json(&ToolCall::new("ask"));
    assert_eq!(approve["decision"], "approve");
    assert!(approve["approval_key"].is_string());
    assert!(approve.get("retry_after").is_none());
    // to_json and Serialize agree.
    let d = h.evaluator.evaluate(&ToolCall::new("nope"));
    assert_eq!(d.to_json(), serde_json::to_value(&d).unwrap());
}

#[test]
fn client_text_tells_the_model_what_to_do() {
    let h = limited(json!({"counter": "c", "window": "minute", "max": 1}));
    let call = ToolCall::new("t").with_grant("g");
    assert_eq!(h.evaluator.evaluate(&call).client_text(), None);
    let text = h.evaluator.evaluate(&call).client_text().unwrap();
    assert!(
        text.starts_with(
            "Rate limited by policy: limit reached: counter `c` admits 1 per minute per grant"
        ),
        "{text}"
    );
    assert!(text.ends_with("Retry after 60 seconds."), "{text}");
}

// ---------------------------------------------------------------- reload and fail-closed

#[test]
fn reload_keeps_counts_of_counters_that_still_exist() {
    let h = limited(json!({"counter": "c", "window": "minute", "max": 2}));
    assert_eq!(h.kind("t", json!({})), Allow);
    assert_eq!(h.kind("t", json!({})), Allow);
    h.evaluator
        .reload(policy(json!({"version": "1", "default": "deny", "tools": {"t2": {"limits": [
        {"counter": "c", "window": "minute", "max": 3}]}}})));
    assert_eq!(h.kind("t2", json!({})), Allow);
    assert_eq!(h.kind("t2", json!({})), Limit);
    // A failed reload leaves the policy in force.
    assert!(
        h.evaluator
            .reload_from_str("{\"version\": \"1\", \"default\": \"allow\", \"x\": 1}")
            .is_err()
    );
    assert_eq!(h.kind("other", json!({})), Deny);
}

struct BrokenStore;

impl CounterStore for BrokenStore {
    fn charge(&self, _: Timestamp, _: &[ChargeRequest<'_>]) -> Result<ChargeOutcome, StoreError> {
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

#[test]
fn a_store_error_denies_unless_fail_open_was_chosen() {
    let p = policy(json!({"version": "1", "default": "deny", "tools": {
        "t": {"limits": [{"counter": "c", "window": "minute", "max": 5}]}, "free": {}}}));
    let closed = Evaluator::with_store(p.clone(), BrokenStore);
    let d = closed.evaluate(&ToolCall::new("t"));
    assert_eq!(d.kind(), Deny);
    assert_eq!(d.rule(), "/tools/t/limits/0");
    assert!(
        d.message().contains("connection refused") && d.message().contains("fail-closed"),
        "{}",
        d.message()
    );
    // Calls without limits never touch the store.
    assert_eq!(closed.evaluate(&ToolCall::new("free")).kind(), Allow);
    let open = Evaluator::with_store(p, BrokenStore).fail_open_on_store_error(true);
    let d = open.evaluate(&ToolCall::new("t"));
    assert_eq!(d.kind(), Allow);
    assert!(d.message().contains("fail-open"));
}

#[test]
fn evaluate_async_decides_like_evaluate() {
    let h = limited(json!({"counter": "c", "window": "minute", "max": 1}));
    let call = ToolCall::new("t");
    let first = block_on(h.evaluator.evaluate_async(&call));
    assert_eq!(first.kind(), Allow);
    let second = block_on(h.evaluator.evaluate_async(&call));
    assert_eq!(second.kind(), Limit);
}

/// Polls a future that is ready at once (the memory store never waits).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the memory store must not wait"),
    }
}

#[test]
fn a_clock_that_goes_back_keeps_counting_the_newer_window() {
    let h = limited(json!({"counter": "c", "window": "minute", "max": 1}));
    h.at(61.0);
    assert_eq!(h.kind("t", json!({})), Allow);
    // Back into the previous minute: the unit charged in the newer window still counts.
    h.at(59.0);
    assert_eq!(h.kind("t", json!({})), Limit);
    let s = limited(json!({"counter": "c", "window": 16, "max": 1, "sliding": true}));
    s.at(10.0);
    assert_eq!(s.kind("t", json!({})), Allow);
    s.at(5.0);
    assert_eq!(s.kind("t", json!({})), Limit);
}

#[test]
fn a_reload_that_changes_a_counters_window_starts_it_afresh() {
    let h = limited(json!({"counter": "c", "window": "minute", "max": 1}));
    assert_eq!(h.kind("t", json!({})), Allow);
    assert_eq!(h.kind("t", json!({})), Limit);
    h.evaluator
        .reload(policy(json!({"version": "1", "default": "deny", "tools": {"t": {"limits": [
        {"counter": "c", "window": "hour", "max": 1}]}}})));
    assert_eq!(h.kind("t", json!({})), Allow, "a new window length is a new count");
    assert_eq!(h.kind("t", json!({})), Limit);
}
