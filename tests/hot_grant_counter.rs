//! Eight threads on ONE grant's counter (the case `benches/evaluate.rs` times as
//! `scaling/eight_threads_one_hot_counter`): exactly `max` calls are admitted, never one more.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;

use mcp_policy::{DecisionKind, Evaluator, ManualClock, Policy, Timestamp, ToolCall};
use serde_json::json;

const THREADS: usize = 8;
const PER_THREAD: usize = 5_000;

fn run(evaluator: &Evaluator, grant: &str) -> [usize; 4] {
    let per_thread: Vec<[usize; 4]> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(move || {
                    let mut counts = [0usize; 4];
                    for _ in 0..PER_THREAD {
                        let call = ToolCall::new("execute_sql").with_grant(grant);
                        let k = match evaluator.evaluate(&call).kind() {
                            DecisionKind::Allow => 0,
                            DecisionKind::Deny => 1,
                            DecisionKind::Limit => 2,
                            DecisionKind::Approve => 3,
                        };
                        counts[k] += 1;
                    }
                    counts
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    per_thread.iter().fold([0; 4], |mut acc, c| {
        for (a, b) in acc.iter_mut().zip(c) {
            *a += b;
        }
        acc
    })
}

#[test]
fn eight_threads_on_one_grant_counter_admit_exactly_max() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_767_225_600.0)));
    let policy = Policy::from_json_str(
        &json!({"version": "1", "default": "deny", "tools": {"execute_sql": {
            "limits": [{"counter": "sql", "window": "minute", "max": 10_000, "scope": "grant"}]}}})
        .to_string(),
    )
    .unwrap();
    let evaluator = Evaluator::new(policy).with_clock(clock.clone());
    let [allow, deny, limit, approve] = run(&evaluator, "agent-hot");
    assert_eq!(allow, 10_000);
    assert_eq!(limit, THREADS * PER_THREAD - 10_000);
    assert_eq!(deny + approve, 0);
    // Another grant has its own counter; the next window admits `max` again.
    assert_eq!(run(&evaluator, "agent-other")[0], 10_000);
    clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(run(&evaluator, "agent-hot")[0], 10_000);
}
