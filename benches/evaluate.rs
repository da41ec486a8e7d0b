//! The evaluate() hot path, next to governor's keyed rate limiter.
//!
//! `cargo bench --bench evaluate`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod support;

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use mcp_policy::{Clock, Evaluator, ManualClock, Policy, Timestamp, ToolCall};
use serde_json::json;

/// The 41-rule policy: 40 tools allowed as they are, and `pay` with a `deny_if` on its amount.
fn rules41_policy() -> String {
    let mut tools: serde_json::Map<String, serde_json::Value> =
        rules41_names().into_iter().map(|n| (n, json!({}))).collect();
    tools.insert(
        "pay".to_owned(),
        json!({"deny_if": [{"conditions": [{"path": "args.amount", "op": "gt", "value": 10000}]}]}),
    );
    json!({"version": "1", "default": "deny", "tools": tools}).to_string()
}

/// The 40 plain tools of [`rules41_policy`].
fn rules41_names() -> Vec<String> {
    (0..40).map(|i| format!("tool_{i:02}")).collect()
}

/// The arguments of the payment call of the 41-rule policy, under its `deny_if` bound.
fn rules41_pay_args() -> serde_json::Value {
    json!({"amount": 250, "to": "acct-7"})
}

/// The 41 calls of the 41-rule policy, the 40 tools then the payment, all allowed.
fn rules41_calls<'a>(
    names: &'a [String],
    args: &'a serde_json::Value,
    pay_args: &'a serde_json::Value,
) -> Vec<ToolCall<'a>> {
    let mut calls: Vec<ToolCall<'a>> =
        names.iter().map(|n| ToolCall::new(n).with_arguments(args).with_grant("agent-1")).collect();
    calls.push(ToolCall::new("pay").with_arguments(pay_args).with_grant("agent-1"));
    calls
}

fn evaluator(doc: &str) -> Evaluator {
    Evaluator::new(Policy::from_json_str(doc).unwrap())
}

const HUGE: u64 = 1 << 53;

fn single(c: &mut Criterion) {
    let mut g = c.benchmark_group("evaluate");
    let args = json!({"statement": "select * from sales where region = 'emea'", "limit": 100, "path": "/srv/data/report.csv"});

    let deny = evaluator(r#"{"version": "1", "default": "deny", "tools": {"list_jobs": {}}}"#);
    g.bench_function("deny_by_default", |b| {
        let call = ToolCall::new("cancel_run").with_arguments(&args).with_grant("agent-1");
        b.iter(|| black_box(deny.evaluate(black_box(&call))).kind())
    });

    let allow = evaluator(r#"{"version": "1", "default": "deny", "tools": {"execute_sql": {}}}"#);
    g.bench_function("allow_no_limit", |b| {
        let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("agent-1");
        b.iter(|| black_box(allow.evaluate(black_box(&call))).kind())
    });

    let limited = evaluator(
        &json!({"version": "1", "default": "deny", "tools": {"execute_sql": {
        "limits": [{"counter": "sql", "window": "minute", "max": HUGE, "scope": "grant"}]}}})
        .to_string(),
    );
    g.bench_function("allow_one_grant_limit", |b| {
        let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("agent-1");
        b.iter(|| black_box(limited.evaluate(black_box(&call))).kind())
    });

    // The same with a manual clock: the difference is the cost of reading the system clock.
    let manual = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_767_225_600.0)));
    let limited_manual = evaluator(
        &json!({"version": "1", "default": "deny", "tools": {"execute_sql": {
        "limits": [{"counter": "sql", "window": "minute", "max": HUGE, "scope": "grant"}]}}})
        .to_string(),
    )
    .with_clock(manual);
    g.bench_function("allow_one_grant_limit_manual_clock", |b| {
        let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("agent-1");
        b.iter(|| black_box(limited_manual.evaluate(black_box(&call))).kind())
    });
    // As a server does it: a `ToolCall` built for each request, inside the measured loop.
    g.bench_function("allow_one_grant_limit_call_in_loop", |b| {
        b.iter(|| {
            let call = ToolCall::new(black_box("execute_sql"))
                .with_arguments(black_box(&args))
                .with_grant(black_box("agent-1"));
            black_box(limited.evaluate(&call)).kind()
        })
    });
    g.bench_function("system_clock_now", |b| b.iter(|| black_box(mcp_policy::SystemClock.now())));
    let fast = mcp_policy::FastClock::new();
    g.bench_function("fast_clock_now", |b| b.iter(|| black_box(black_box(&fast).now())));

    let conditions = evaluator(
        &json!({"version": "1", "default": "deny", "tools": {"execute_sql": {
        "require": [{"conditions": [{"path": "grant", "op": "starts_with", "value": "agent-"}]}],
        "deny_if": [{"conditions": [
            {"path": "args.limit", "op": "gt", "value": 10000},
            {"path": "args.statement", "op": "contains", "value": "; drop"}]}],
        "limits": [{"counter": "sql", "window": "minute", "max": HUGE, "scope": "grant"}]}}})
        .to_string(),
    );
    g.bench_function("allow_three_conditions_one_limit", |b| {
        let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("agent-1");
        b.iter(|| black_box(conditions.evaluate(black_box(&call))).kind())
    });

    let regex = evaluator(&json!({"version": "1", "default": "deny", "tools": {"execute_sql": {
        "deny_if": [{"conditions": [{"path": "args.statement", "op": "regex", "value": "(?i)\\b(drop|truncate)\\b"}]}]}}}).to_string());
    g.bench_function("allow_one_regex", |b| {
        let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("agent-1");
        b.iter(|| black_box(regex.evaluate(black_box(&call))).kind())
    });

    let schema = evaluator(
        &json!({"version": "1", "default": "deny", "tools": {"execute_sql": {
        "arguments": {"type": "object", "required": ["statement"], "properties": {
            "statement": {"type": "string", "maxLength": 10000}, "limit": {"type": "integer"}}}}}})
        .to_string(),
    );
    g.bench_function("allow_arguments_schema", |b| {
        let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("agent-1");
        b.iter(|| black_box(schema.evaluate(black_box(&call))).kind())
    });

    let big = evaluator(&support::many_tools(10_000));
    g.bench_function("allow_no_limit_10000_tools_100_patterns", |b| {
        let call = ToolCall::new("tool_05000").with_arguments(&args).with_grant("agent-1");
        b.iter(|| black_box(big.evaluate(black_box(&call))).kind())
    });
    g.bench_function("allow_pattern_10000_tools_100_patterns", |b| {
        let call = ToolCall::new("pattern_050_x").with_arguments(&args).with_grant("agent-1");
        b.iter(|| black_box(big.evaluate(black_box(&call))).kind())
    });
    g.bench_function("deny_by_default_10000_tools_100_patterns", |b| {
        let call = ToolCall::new("cancel_run").with_arguments(&args).with_grant("agent-1");
        b.iter(|| black_box(big.evaluate(black_box(&call))).kind())
    });

    // 41 rules: 40 tools allowed as they are, and a payment tool with a `deny_if` on its
    // amount; every call allowed, the 41 tools called in turn.
    let rules41 = evaluator(&rules41_policy());
    let names = rules41_names();
    let pay_args = rules41_pay_args();
    let calls = rules41_calls(&names, &args, &pay_args);
    assert!(calls.iter().all(|c| rules41.evaluate(c).is_allowed()));
    g.bench_function("allow_41_rules_round_robin", |b| {
        let mut i = 0;
        b.iter(|| {
            i = if i + 1 == calls.len() { 0 } else { i + 1 };
            black_box(rules41.evaluate(black_box(&calls[i]))).kind()
        })
    });
    g.bench_function("allow_41_rules_deny_if_amount", |b| {
        let call = ToolCall::new("pay").with_arguments(&pay_args).with_grant("agent-1");
        b.iter(|| black_box(rules41.evaluate(black_box(&call))).kind())
    });

    // The seed policy's limit being hit: the refused path.
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_767_225_600.0)));
    let seed = evaluator(include_str!("../examples/seed-policy.json")).with_clock(clock);
    g.bench_function("limit_refused_seed_policy", |b| {
        let call = ToolCall::new("cancel_run").with_arguments(&args).with_grant("agent-1");
        b.iter(|| black_box(seed.evaluate(black_box(&call))).kind())
    });
    g.finish();

    // governor's keyed rate limiter on the same key, in the same run.
    let mut g = c.benchmark_group("governor");
    let limiter = governor::RateLimiter::keyed(governor::Quota::per_second(NonZeroU32::MAX));
    let key = "agent-1".to_owned();
    g.bench_function("check_key", |b| {
        b.iter(|| black_box(limiter.check_key(black_box(&key))).is_ok())
    });
    g.finish();
}

/// Throughput of one thread, then of two threads on distinct grants: same total work.
fn scaling(c: &mut Criterion) {
    let doc = json!({"version": "1", "default": "deny", "tools": {"execute_sql": {
        "limits": [{"counter": "sql", "window": "minute", "max": HUGE, "scope": "grant"}]}}})
    .to_string();
    let e = evaluator(&doc);
    let run = |threads: usize, per_thread: u64| -> Duration {
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let e = &e;
                s.spawn(move || {
                    let grant = format!("agent-{t}");
                    let call = ToolCall::new("execute_sql").with_grant(&grant);
                    for _ in 0..per_thread {
                        black_box(e.evaluate(black_box(&call)).kind());
                    }
                });
            }
        });
        start.elapsed()
    };
    let mut g = c.benchmark_group("scaling");
    // Each iteration is one evaluation per thread: the time per iteration of the two-thread
    // run over the one-thread run shows how well two cores share the work.
    g.bench_function("one_thread_per_call", |b| b.iter_custom(|iters| run(1, iters)));
    g.bench_function("two_threads_per_call_each", |b| b.iter_custom(|iters| run(2, iters)));

    // Eight threads on ONE grant's counter: every call contends for the same shard lock. Each
    // iteration is one evaluation per thread (eight in all).
    let hot = |e: &Evaluator, threads: usize, per_thread: u64| -> (Duration, u64) {
        let start = Instant::now();
        let admitted: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(move || {
                        let call = ToolCall::new("execute_sql").with_grant("agent-hot");
                        (0..per_thread)
                            .filter(|_| e.evaluate(black_box(&call)).is_allowed())
                            .count() as u64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        (start.elapsed(), admitted)
    };
    // The check first: with `max` 10,000 and 8 × 5,000 calls in the same minute, exactly
    // 10,000 are admitted.
    let capped = evaluator(
        &json!({"version": "1", "default": "deny", "tools": {"execute_sql": {
        "limits": [{"counter": "sql", "window": "day", "max": 10_000, "scope": "grant"}]}}})
        .to_string(),
    );
    let (_, admitted) = hot(&capped, 8, 5_000);
    assert_eq!(admitted, 10_000, "8 threads on one counter must admit exactly `max`");
    g.bench_function("eight_threads_one_hot_counter", |b| {
        b.iter_custom(|iters| hot(&e, 8, iters).0)
    });
    g.finish();
}

criterion_group!(benches, single, scaling);

/// Instruction counts: with `MCP_POLICY_BENCH_COUNT=CASE:N` the bench runs CASE `N` times and
/// nothing else, for `perf stat -e instructions:u` (run it with N and with 0; the difference over
/// N is the cost of one call). CASE is `deny`, `allow`, `limit`, `limit_loop`, `rules41` or
/// `governor`.
fn count(spec: &str) {
    let (case, n) = spec.split_once(':').expect("CASE:N");
    let n: u64 = n.parse().expect("N is a number");
    let args = json!({"statement": "select * from sales where region = 'emea'", "limit": 100, "path": "/srv/data/report.csv"});
    let limited = json!({"version": "1", "default": "deny", "tools": {"execute_sql": {
        "limits": [{"counter": "sql", "window": "minute", "max": HUGE, "scope": "grant"}]}}})
    .to_string();
    let one = |doc: &str, tool: &str| {
        let e = evaluator(doc);
        let call = ToolCall::new(tool).with_arguments(&args).with_grant("agent-1");
        for _ in 0..n {
            black_box(e.evaluate(black_box(&call)).kind());
        }
    };
    match case {
        "deny" => {
            one(r#"{"version": "1", "default": "deny", "tools": {"list_jobs": {}}}"#, "cancel_run")
        }
        "allow" => one(
            r#"{"version": "1", "default": "deny", "tools": {"execute_sql": {}}}"#,
            "execute_sql",
        ),
        "limit" => one(&limited, "execute_sql"),
        "limit_loop" => {
            let e = evaluator(&limited);
            for _ in 0..n {
                let call = ToolCall::new(black_box("execute_sql"))
                    .with_arguments(black_box(&args))
                    .with_grant(black_box("agent-1"));
                black_box(e.evaluate(&call).kind());
            }
        }
        "rules41" => {
            let e = evaluator(&rules41_policy());
            let names = rules41_names();
            let pay_args = rules41_pay_args();
            let calls = rules41_calls(&names, &args, &pay_args);
            let mut i = 0;
            for _ in 0..n {
                i = if i + 1 == calls.len() { 0 } else { i + 1 };
                black_box(e.evaluate(black_box(&calls[i])).kind());
            }
        }
        "governor" => {
            let limiter =
                governor::RateLimiter::keyed(governor::Quota::per_second(NonZeroU32::MAX));
            let key = "agent-1".to_owned();
            for _ in 0..n {
                black_box(limiter.check_key(black_box(&key)).is_ok());
            }
        }
        other => panic!("unknown case `{other}`"),
    }
}

fn main() {
    if let Ok(spec) = std::env::var("MCP_POLICY_BENCH_COUNT") {
        count(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
