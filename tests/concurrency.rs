//! Exactness under concurrency: many threads, one counter, never one call too many.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mcp_policy::{DecisionKind, Evaluator, ManualClock, Policy, Timestamp, ToolCall};
use serde_json::json;

const THREADS: usize = 8;
const CALLS: usize = 100_000;

fn evaluator(doc: serde_json::Value) -> Evaluator {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_767_225_600.0)));
    Evaluator::new(Policy::from_json_str(&doc.to_string()).unwrap()).with_clock(clock)
}

/// Runs `CALLS` evaluations of `tool` split over `THREADS` threads; counts each decision kind.
fn hammer(evaluator: &Evaluator, tool: &str, grant: impl Fn(usize) -> String + Sync) -> [usize; 4] {
    let counts: [AtomicUsize; 4] = Default::default();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let counts = &counts;
            let grant = &grant;
            s.spawn(move || {
                for i in 0..CALLS / THREADS {
                    let g = grant(t * CALLS + i);
                    let d = evaluator.evaluate(&ToolCall::new(tool).with_grant(&g));
                    let k = match d.kind() {
                        DecisionKind::Allow => 0,
                        DecisionKind::Deny => 1,
                        DecisionKind::Limit => 2,
                        DecisionKind::Approve => 3,
                    };
                    counts[k].fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    counts.map(|c| c.into_inner())
}

#[test]
fn exactly_max_admitted_by_eight_threads_on_one_counter() {
    let e = evaluator(json!({"version": "1", "default": "deny", "tools": {"t": {"limits": [
        {"counter": "c", "window": "minute", "max": 1000, "scope": "global"}]}}}));
    let [allow, deny, limit, approve] = hammer(&e, "t", |_| "g".to_owned());
    assert_eq!(allow, 1000);
    assert_eq!(limit, CALLS - 1000);
    assert_eq!(deny + approve, 0);
}

#[test]
fn two_limits_per_call_stay_consistent() {
    // `calls` (max 3000) is charged by every tool; `t` (max 1000) only by `t`. Threads call `t`
    // and `u` alternately. No refused call may charge either counter, so exactly 1000 `t` calls
    // and exactly 2000 `u` calls are admitted (`calls` runs out at 3000).
    let e = evaluator(json!({"version": "1", "default": "allow",
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 3000, "scope": "global"}]},
        "tools": {"t": {"limits": [{"counter": "t", "window": "minute", "max": 1000, "scope": "global"}]}}}));
    let admitted_t = AtomicUsize::new(0);
    let admitted_u = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for i in 0..CALLS / THREADS {
                    let (tool, counter) =
                        if i % 2 == 0 { ("t", &admitted_t) } else { ("u", &admitted_u) };
                    if e.evaluate(&ToolCall::new(tool)).is_allowed() {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let (t, u) = (admitted_t.into_inner(), admitted_u.into_inner());
    assert_eq!(t, 1000, "t");
    assert_eq!(t + u, 3000, "calls");
    // Both counters are exactly full: one more of each kind is refused by the right limit.
    assert_eq!(e.evaluate(&ToolCall::new("t")).rule(), "/tools/t/limits/0");
    assert_eq!(e.evaluate(&ToolCall::new("u")).rule(), "/all_tools/limits/0");
}

#[test]
fn distinct_grants_do_not_share_counts() {
    let e = evaluator(json!({"version": "1", "default": "deny", "tools": {"t": {"limits": [
        {"counter": "c", "window": "minute", "max": 3}]}}}));
    // 1000 grants, 100 calls each: 3 admitted per grant.
    let [allow, _, limit, _] = hammer(&e, "t", |i| format!("grant-{}", i % 1000));
    assert_eq!(allow, 3000);
    assert_eq!(limit, CALLS - 3000);
}

#[test]
fn reloads_during_evaluation_keep_counts_exact() {
    let doc = |description: &str| {
        Policy::from_json_str(&json!({"version": "1", "default": "deny", "description": description,
            "tools": {"t": {"limits": [{"counter": "c", "window": "minute", "max": 1000, "scope": "global"}]}}})
            .to_string())
        .unwrap()
    };
    let e = evaluator(json!({"version": "1", "default": "deny", "tools": {"t": {"limits": [
        {"counter": "c", "window": "minute", "max": 1000, "scope": "global"}]}}}));
    let admitted = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    if e.evaluate(&ToolCall::new("t")).is_allowed() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        s.spawn(|| {
            for i in 0..200 {
                e.reload(doc(&format!("v{i}")));
            }
        });
    });
    assert_eq!(admitted.into_inner(), 1000);
}
