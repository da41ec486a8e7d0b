//! Monitor mode: the same decisions as enforcing, marked so that the embedder dispatches anyway,
//! charging only what enforcing would charge.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use mcp_policy::{
    ChargeOutcome, ChargeRequest, CounterStore, DecisionKind, Evaluator, ManualClock, Mode, Policy,
    StoreError, Timestamp, ToolCall,
};
use serde_json::{Value, json};

use DecisionKind::{Allow, Approve, Deny, Limit};

/// 2026-01-01T00:00:00Z.
const T0: f64 = 1_767_225_600.0;

fn policy(doc: &Value) -> Policy {
    Policy::from_json_str(&doc.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn pair(doc: &Value) -> (Evaluator, Evaluator, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(T0)));
    let enforce = Evaluator::new(policy(doc)).with_clock(clock.clone());
    let monitor = Evaluator::new(policy(doc)).with_clock(clock.clone()).with_mode(Mode::Monitor);
    (enforce, monitor, clock)
}

fn doc() -> Value {
    json!({"version": "1", "default": "deny", "hide": ["secret"],
    "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 6}]},
    "tools": {
        "read": {"deny_if": [{"conditions": [{"path": "args.path", "op": "starts_with", "value": "/etc"}],
                              "on_deny": "no system files"}]},
        "pay": {"approve_if": [{"conditions": [{"path": "args.amount", "op": "gt", "value": 100}]}],
                "limits": [{"counter": "eur", "window": "hour", "max": 300, "increment_from": "args.amount"}]}
    }})
}

#[test]
fn monitor_decides_exactly_as_enforce_and_charges_only_what_enforcing_charges() {
    let (enforce, monitor, clock) = pair(&doc());
    let calls: Vec<(&str, Value)> = vec![
        ("read", json!({"path": "/srv/a"})),
        ("read", json!({"path": "/etc/passwd"})),
        ("secret", json!({})),
        ("unknown", json!({})),
        ("pay", json!({"amount": 150})),
        ("pay", json!({"amount": 200})),
        ("pay", json!({"amount": 100})),
        ("pay", json!({"amount": 250})), // over what is left of `eur`: limited, charges nothing
        ("pay", json!({"amount": 100})), // still fits: the limited call charged nothing
        ("pay", json!({"amount": -1})),
        ("pay", json!({"amount": 1})),
        ("read", json!({"path": "/srv/b"})),
        ("read", json!({"path": "/srv/c"})),
        ("read", json!({"path": "/srv/d"})), // `calls` exhausted
        ("read", json!({"path": "/etc/x"})),
    ];
    let mut kinds = Vec::new();
    for (tool, args) in &calls {
        let call = ToolCall::new(tool).with_arguments(args).with_grant("g");
        let e = enforce.evaluate(&call);
        let m = monitor.evaluate(&call);
        assert_eq!(
            (m.kind(), m.rule(), m.message(), m.retry_after()),
            (e.kind(), e.rule(), e.message(), e.retry_after()),
            "{tool} {args}"
        );
        assert!(m.is_monitored() && m.should_dispatch());
        assert!(!e.is_monitored());
        assert_eq!(e.should_dispatch(), e.is_allowed());
        assert_eq!(m.client_text(), e.client_text());
        kinds.push(m.kind());
        clock.advance(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        kinds,
        [
            Allow, Deny, Deny, Deny, Approve, Approve, Allow, Limit, Allow, Deny, Allow, Allow,
            Allow, Limit, Deny
        ]
    );
}

#[test]
fn a_monitored_decision_is_marked_in_its_json() {
    let (enforce, monitor, _) = pair(&doc());
    let call = ToolCall::new("unknown");
    let e = serde_json::to_value(enforce.evaluate(&call)).unwrap();
    let m = serde_json::to_value(monitor.evaluate(&call)).unwrap();
    assert!(e.get("monitor").is_none());
    assert_eq!(m["monitor"], json!(true));
    let mut without = m.clone();
    without.as_object_mut().unwrap().remove("monitor");
    assert_eq!(without, e);
    let d = monitor.evaluate(&call);
    assert_eq!(d.to_json(), serde_json::to_value(&d).unwrap());
    let args = json!({"path": "/srv/a"});
    let allowed = monitor.evaluate(&ToolCall::new("read").with_arguments(&args));
    assert_eq!(allowed.to_json()["monitor"], json!(true));
    assert_eq!(monitor.mode(), Mode::Monitor);
    assert_eq!(enforce.mode(), Mode::Enforce);
    assert_eq!(Evaluator::new(policy(&doc())).mode(), Mode::Enforce, "enforce by default");
}

#[test]
fn monitor_mode_creates_no_pending_approval() {
    let (_, monitor, _) = pair(&doc());
    let args = json!({"amount": 150});
    let call = ToolCall::new("pay").with_arguments(&args).with_grant("g");
    let d = monitor.evaluate(&call);
    assert_eq!(d.kind(), Approve);
    assert!(d.approval_key().is_none() && d.approval_id().is_none());
    assert!(d.to_json().get("approval_key").is_none());
    assert!(monitor.pending_approvals().is_empty());
    // An approve decision charged nothing: 300 euros still fit in the hour.
    for amount in [100, 100, 100] {
        let args = json!({ "amount": amount });
        let d = monitor.evaluate(&ToolCall::new("pay").with_arguments(&args).with_grant("g"));
        assert_eq!(d.kind(), Allow);
    }
    let args = json!({"amount": 1});
    assert_eq!(
        monitor.evaluate(&ToolCall::new("pay").with_arguments(&args).with_grant("g")).kind(),
        Limit
    );
}

#[test]
fn a_monitored_allowed_call_can_be_rolled_back() {
    let (_, monitor, _) = pair(&json!({"version": "1", "default": "deny", "tools": {"t": {
        "limits": [{"counter": "c", "window": "minute", "max": 1}]}}}));
    let call = ToolCall::new("t");
    let mut d = monitor.evaluate(&call);
    assert!(d.is_allowed() && d.has_charge());
    monitor.rollback(&mut d).unwrap();
    assert_eq!(monitor.evaluate(&call).kind(), Allow);
    let d = monitor.evaluate(&call);
    assert_eq!(d.kind(), Limit);
    assert!(!d.has_charge() && d.should_dispatch());
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
fn monitor_mode_reports_a_store_error_as_the_deny_it_would_be() {
    let doc = json!({"version": "1", "default": "deny", "tools": {"t": {
        "limits": [{"counter": "c", "window": "minute", "max": 1}]}}});
    let monitor = Evaluator::with_store(policy(&doc), BrokenStore).with_mode(Mode::Monitor);
    let d = monitor.evaluate(&ToolCall::new("t"));
    assert_eq!(d.kind(), Deny);
    assert!(d.message().contains("fail-closed"), "{}", d.message());
    assert!(d.should_dispatch());
}

#[test]
fn evaluate_async_marks_monitored_decisions_too() {
    let (_, monitor, _) = pair(&doc());
    let call = ToolCall::new("unknown");
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(monitor.evaluate_async(&call));
    let std::task::Poll::Ready(d) = f.as_mut().poll(&mut cx) else { panic!("not ready") };
    assert_eq!(d.kind(), Deny);
    assert!(d.is_monitored() && d.should_dispatch());
}
