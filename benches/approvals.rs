//! Issuing approvals at the caps: eviction must not scan the pending entries.
//!
//! `cargo bench --bench approvals`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::cell::Cell;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_policy::{DecisionKind, Evaluator, Policy, ToolCall};
use mcp_policy::{MAX_PENDING, MAX_PENDING_PER_GRANT};
use serde_json::json;

/// `execute_sql` always asks a human; a limit that never refuses, so that the limits are
/// checked before asking as they are in a real policy.
fn evaluator() -> Evaluator {
    let doc = r#"{"version": "1", "default": "deny", "tools": {"execute_sql": {
        "approve_if": [{"conditions": [], "reason": "a human decides"}],
        "limits": [{"counter": "sql", "window": "minute", "max": 9007199254740992}]}}}"#;
    Evaluator::new(Policy::from_json_str(doc).unwrap())
}

/// Asks for a new, distinct call of `grant`.
fn ask(e: &Evaluator, grant: &str, n: u64) {
    let args = json!({"statement": "delete from t where id = ?", "id": n});
    let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant(grant);
    let d = e.evaluate(&call);
    debug_assert_eq!(d.kind(), DecisionKind::Approve);
    let _ = black_box(d);
}

fn approvals(c: &mut Criterion) {
    let mut g = c.benchmark_group("approvals");
    let next = Cell::new(0u64);
    let fresh = || {
        next.set(next.get() + 1);
        next.get()
    };

    // One grant at its own cap: every new call evicts that grant's oldest.
    let e = evaluator();
    for _ in 0..MAX_PENDING_PER_GRANT {
        ask(&e, "flood", fresh());
    }
    g.bench_function("issue_one_grant_at_its_cap", |b| b.iter(|| ask(&e, "flood", fresh())));

    // Every entry taken (100,000, of 100 grants): the flooding grant evicts its own oldest.
    let e = evaluator();
    for i in 0..MAX_PENDING {
        ask(&e, &format!("grant-{}", i / MAX_PENDING_PER_GRANT), fresh());
    }
    g.bench_function("issue_at_the_global_cap_same_grant", |b| {
        b.iter(|| ask(&e, "grant-0", fresh()))
    });
    // Every entry taken, each call from a new grant: the oldest entry of all goes.
    g.bench_function("issue_at_the_global_cap_new_grants", |b| {
        b.iter(|| {
            let n = fresh();
            ask(&e, &format!("new-{n}"), n)
        })
    });

    // An identical call already pending: its entry is reused.
    let args = json!({"statement": "delete from t where id = ?", "id": 1});
    let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("grant-0");
    let _ = e.evaluate(&call);
    g.bench_function("identical_pending_call_at_the_global_cap", |b| {
        b.iter(|| black_box(e.evaluate(black_box(&call))).kind())
    });
    g.finish();
}

criterion_group!(benches, approvals);
criterion_main!(benches);
