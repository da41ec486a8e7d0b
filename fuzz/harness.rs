#![allow(
    dead_code,
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

//! The fuzz harnesses, as plain functions: the cargo-fuzz targets call them with libFuzzer's
//! inputs, and `tests/fuzz_corpus.rs` replays the checked-in corpus through them on the stable
//! toolchain. Each one panics only when an invariant of the library breaks.

use std::sync::Arc;

use mcp_policy::{DecisionKind, Evaluator, ManualClock, Policy, Timestamp, ToolCall};
use serde_json::{Value, json};

/// Loading any text never panics; a document that loads serialises back (through the model) to
/// a document that loads, with the same digest.
pub(crate) fn load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Policy::from_json_str(text) {
        Ok(policy) => {
            let again =
                serde_json::to_string(policy.document()).expect("a loaded model serialises");
            let reloaded = Policy::from_json_str(&again).expect("a loaded model loads again");
            assert_eq!(policy.digest(), reloaded.digest());
        }
        Err(e) => {
            assert!(!e.diagnostics().is_empty(), "an invalid document has a diagnostic");
            for d in e.diagnostics() {
                assert!(d.line() >= 1 && d.column() >= 1);
            }
        }
    }
}

/// Splits `data` at the first NUL into two UTF-8 parts.
fn two_parts(data: &[u8]) -> Option<(&str, &str)> {
    let at = data.iter().position(|b| *b == 0)?;
    let (a, b) = data.split_at(at);
    Some((std::str::from_utf8(a).ok()?, std::str::from_utf8(b.get(1..)?).ok()?))
}

/// A condition (JSON, before the first NUL) against arguments (JSON, after it). Whatever the
/// condition and the arguments, `require` and `deny_if` with that condition never both allow:
/// a true condition fails `deny_if`, a false one fails `require`, an unknown one fails both.
pub(crate) fn condition(data: &[u8]) {
    let Some((condition, arguments)) = two_parts(data) else { return };
    let Ok(condition) = serde_json::from_str::<Value>(condition) else { return };
    let Ok(arguments) = serde_json::from_str::<Value>(arguments) else { return };
    let doc = |key: &str| json!({"version": "1", "default": "deny", "tools": {"t": {key: [{"conditions": [condition.clone()]}]}}});
    let (Ok(require), Ok(deny_if)) = (
        Policy::from_json_str(&doc("require").to_string()),
        Policy::from_json_str(&doc("deny_if").to_string()),
    ) else {
        return;
    };
    let call = ToolCall::new("t").with_arguments(&arguments).with_grant("g");
    let r = Evaluator::new(require).evaluate(&call).kind();
    let d = Evaluator::new(deny_if).evaluate(&call).kind();
    assert!(
        !(r == DecisionKind::Allow && d == DecisionKind::Allow),
        "require and deny_if both allowed {condition} on {arguments}"
    );
    if !arguments.is_object() {
        assert_eq!((r, d), (DecisionKind::Deny, DecisionKind::Deny), "a malformed call is denied");
    }
}

/// A policy (JSON, before the first NUL) and a sequence of calls (JSON lines after it): every
/// decision has the documented shape, a hidden tool is denied, and an approved call decided
/// again with its approval key never comes back as approve.
pub(crate) fn evaluate(data: &[u8]) {
    let Some((policy, calls)) = two_parts(data) else { return };
    let Ok(policy) = Policy::from_json_str(policy) else { return };
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_767_225_600.0)));
    let evaluator = Evaluator::new(policy.clone()).with_clock(clock.clone());
    for line in calls.lines().take(64) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let tool = v.get("tool").and_then(Value::as_str).unwrap_or("t");
        let grant = v.get("grant").and_then(Value::as_str).unwrap_or("");
        let mut call = ToolCall::new(tool).with_grant(grant);
        if let Some(a) = v.get("arguments") {
            call = call.with_arguments(a);
        }
        if let Some(c) = v.get("context") {
            call = call.with_context(c);
        }
        if let Some(s) = v.get("session").and_then(Value::as_str) {
            call = call.with_session(s);
        }
        if let Some(dt) = v.get("advance_ms").and_then(Value::as_u64) {
            clock.advance(std::time::Duration::from_millis(dt.min(86_400_000)));
        }
        let d = evaluator.evaluate(&call);
        let j = d.to_json();
        assert_eq!(j["tool"], tool);
        assert!(j["rule"].is_string() && j["message"].is_string());
        assert_eq!(j.get("retry_after").is_some(), d.kind() == DecisionKind::Limit);
        assert_eq!(j.get("approval_key").is_some(), d.kind() == DecisionKind::Approve);
        if policy.is_hidden(tool) {
            assert_eq!(d.kind(), DecisionKind::Deny, "a hidden tool is denied");
        }
        if d.kind() == DecisionKind::Approve {
            // The approved call is decided again; it never comes back as approve.
            let key = d.approval_key().unwrap_or_default().to_owned();
            let again = evaluator.evaluate(&call.with_approval_key(&key)).kind();
            assert_ne!(again, DecisionKind::Approve);
        }
    }
}
