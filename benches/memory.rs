//! Memory per live counter: charges one counter for each of 1,000,000 grants and compares the
//! resident set size before and after (the grant strings are made before the first reading).
//!
//! `cargo bench --bench memory`

#![allow(clippy::unwrap_used, missing_docs)]

use mcp_policy::{Evaluator, ManualClock, MemoryStore, Policy, Timestamp, ToolCall};

/// The resident set size of this process, from `/proc/self/status` (Linux), in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

const GRANTS: usize = 1_000_000;

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not support.
    let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {"cancel_run": {
        "limits": [{"counter": "cancel_run_rate", "window": "minute", "max": 10}]}}}"#
        .parse()
        .unwrap();
    let clock =
        std::sync::Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_767_225_600.0)));
    let evaluator = Evaluator::with_store(policy, MemoryStore::new()).with_clock(clock);
    let grants: Vec<String> = (0..GRANTS).map(|i| format!("grant-{i:07}")).collect();
    let before = rss();
    for g in &grants {
        assert!(evaluator.evaluate(&ToolCall::new("cancel_run").with_grant(g)).is_allowed());
    }
    let after = rss();
    assert_eq!(evaluator.store().len(), GRANTS);
    let per = after.saturating_sub(before) as f64 / GRANTS as f64;
    println!(
        "memory/live_counter: {per:.1} bytes per counter ({GRANTS} grants, 13-byte grant ids, 15-byte counter name)"
    );
}
