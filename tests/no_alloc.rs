//! The hot path allocates nothing for a known key (docs/performance.md, "No allocation for a
//! known key"): an allowed call without a limit, a deny by default, an allowed call charging
//! an existing counter and a call refused by its limit allocate nothing.
//! Counted with a counting global allocator (`allocation-counter`, linked into this test binary
//! only).

#![allow(clippy::unwrap_used)]

use mcp_policy::{DecisionKind, Evaluator, Policy, ToolCall};
use serde_json::json;

const POLICY: &str = r#"{
  "version": "1",
  "default": "deny",
  "tools": {
    "list_jobs": {},
    "cancel_run": {
      "require": [{ "conditions": [{ "path": "args.run_id", "op": "exists", "value": true }] }],
      "limits": [{ "counter": "cancel", "window": "minute", "max": 1000000, "scope": "grant" }]
    },
    "start_cluster": {
      "limits": [{ "counter": "start", "window": "hour", "max": 1, "scope": "grant" }]
    }
  }
}"#;

/// Allocations made by `evaluate` on `call`, after one warm-up call that creates the counters.
fn allocations(evaluator: &Evaluator, call: &ToolCall<'_>, expect: DecisionKind) -> u64 {
    assert_eq!(evaluator.evaluate(call).kind(), expect);
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            let decision = evaluator.evaluate(call);
            assert_eq!(decision.kind(), expect);
        }
    });
    info.count_total
}

#[test]
fn evaluating_a_known_key_allocates_nothing() {
    let evaluator = Evaluator::new(POLICY.parse::<Policy>().unwrap());
    let args = json!({"run_id": 42});

    let allowed = ToolCall::new("list_jobs").with_grant("agent-1");
    assert_eq!(allocations(&evaluator, &allowed, DecisionKind::Allow), 0, "allow, no limit");

    let unknown = ToolCall::new("drop_table").with_grant("agent-1");
    assert_eq!(allocations(&evaluator, &unknown, DecisionKind::Deny), 0, "deny by default");

    let limited = ToolCall::new("cancel_run").with_arguments(&args).with_grant("agent-1");
    assert_eq!(allocations(&evaluator, &limited, DecisionKind::Allow), 0, "allow, one limit");

    // A refusal's message is made at the limit's first refusal (the warm-up call) and shared by
    // the next ones: a refused call allocates nothing either. The first call takes the only
    // unit; every later one is refused by the same counter.
    let exhausted = ToolCall::new("start_cluster").with_grant("agent-1");
    assert_eq!(evaluator.evaluate(&exhausted).kind(), DecisionKind::Allow);
    let refused = allocations(&evaluator, &exhausted, DecisionKind::Limit);
    assert_eq!(refused, 0, "limit: {refused} allocations for 100 refusals");
}

#[test]
fn the_counter_sees_allocations() {
    // The measuring itself works: a new grant creates its counter, which allocates.
    let evaluator = Evaluator::new(POLICY.parse::<Policy>().unwrap());
    let args = json!({"run_id": 42});
    let grants: Vec<String> = (0..100).map(|i| format!("agent-{i}")).collect();
    let info = allocation_counter::measure(|| {
        for g in &grants {
            let call = ToolCall::new("cancel_run").with_arguments(&args).with_grant(g);
            assert_eq!(evaluator.evaluate(&call).kind(), DecisionKind::Allow);
        }
    });
    assert!(info.count_total > 0);
}
