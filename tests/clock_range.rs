//! Times outside the supported range (1970 to the end of 2500): the evaluator denies instead of
//! counting in a window that never fills (issue 10, item 8).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use mcp_policy::{DecisionKind, Evaluator, ManualClock, Policy, Timestamp, ToolCall};
use serde_json::json;

fn one_a_minute(sliding: bool) -> Policy {
    json!({"version": "1", "default": "deny", "tools": {"t": {
        "limits": [{"counter": "c", "window": "minute", "max": 1, "sliding": sliding}]}}})
    .to_string()
    .parse()
    .unwrap()
}

/// Every time a clock might read, in range or not, written as the constructors make them.
fn times() -> Vec<(String, Timestamp)> {
    let mut out = Vec::new();
    for s in [
        0.0,
        -0.0,
        59.999,
        1_767_225_600.0,
        16_756_761_599.0,
        16_756_761_600.0,
        18_446_744_073.709_553,
        1e300,
        f64::MAX,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -1.0,
        -1e300,
    ] {
        out.push((format!("from_unix_seconds({s})"), Timestamp::from_unix_seconds(s)));
    }
    for n in [
        0,
        Timestamp::SUPPORTED_MAX.as_unix_nanos(),
        Timestamp::SUPPORTED_MAX.as_unix_nanos() + 1,
        u64::MAX - 1,
        u64::MAX,
    ] {
        out.push((format!("from_unix_nanos({n})"), Timestamp::from_unix_nanos(n)));
    }
    let before_epoch = std::time::UNIX_EPOCH - std::time::Duration::from_secs(1);
    out.push(("from_system_time(1969)".into(), Timestamp::from_system_time(before_epoch)));
    out.push((
        "saturating_add(MAX)".into(),
        Timestamp::SUPPORTED_MAX.saturating_add(std::time::Duration::MAX),
    ));
    out
}

#[test]
fn a_limit_of_one_a_minute_never_admits_two_at_any_time() {
    for sliding in [false, true] {
        for (name, t) in times() {
            let clock = Arc::new(ManualClock::new(t));
            let evaluator = Evaluator::new(one_a_minute(sliding)).with_clock(clock);
            let allowed = (0..3)
                .filter(|_| evaluator.evaluate(&ToolCall::new("t").with_grant("g")).is_allowed())
                .count();
            assert!(allowed <= 1, "{name} (sliding {sliding}): {allowed} calls admitted");
            if t.is_supported() {
                assert_eq!(allowed, 1, "{name}: a supported time admits the first call");
            } else {
                assert_eq!(allowed, 0, "{name}: an unsupported time admits nothing");
            }
        }
    }
}

#[test]
fn a_clock_out_of_range_denies_and_says_so() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1e300)));
    let evaluator = Evaluator::new(one_a_minute(false)).with_clock(clock.clone());
    let d = evaluator.evaluate(&ToolCall::new("t").with_grant("g"));
    assert_eq!(d.kind(), DecisionKind::Deny);
    assert!(d.message().contains("clock is out of range"), "{}", d.message());
    // Back in range, the limit counts again.
    clock.set(Timestamp::from_unix_seconds(1_767_225_600.0));
    assert!(evaluator.evaluate(&ToolCall::new("t").with_grant("g")).is_allowed());
    assert_eq!(evaluator.evaluate(&ToolCall::new("t").with_grant("g")).kind(), DecisionKind::Limit);
}

#[test]
fn an_approval_is_not_issued_on_a_clock_out_of_range() {
    let policy: Policy = json!({"version": "1", "default": "deny", "tools": {"t": {
        "approve_if": [{"conditions": []}]}}})
    .to_string()
    .parse()
    .unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_nanos(u64::MAX)));
    let evaluator = Evaluator::new(policy).with_clock(clock);
    let d = evaluator.evaluate(&ToolCall::new("t"));
    assert_eq!(d.kind(), DecisionKind::Deny);
    assert!(d.message().contains("clock is out of range"), "{}", d.message());
}

#[test]
fn a_call_that_needs_no_time_is_decided_whatever_the_clock() {
    let policy: Policy =
        json!({"version": "1", "default": "deny", "tools": {"t": {}}}).to_string().parse().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_nanos(u64::MAX)));
    let evaluator = Evaluator::new(policy).with_clock(clock);
    assert!(evaluator.evaluate(&ToolCall::new("t")).is_allowed());
}

#[test]
fn the_checked_constructor_rejects_what_the_evaluator_would_deny() {
    for s in [1e300, f64::NAN, f64::INFINITY, -1.0, 16_756_761_600.0, 1e10 * 1e9] {
        assert_eq!(Timestamp::try_from_unix_seconds(s), None, "{s}");
    }
    for s in [0.0, 1.5, 1_767_225_600.25, 16_756_761_599.999] {
        let t = Timestamp::try_from_unix_seconds(s).unwrap();
        assert!(t.is_supported());
        assert_eq!(t, Timestamp::from_unix_seconds(s));
    }
}
