//! Decision latency on Redis next to a bare `INCR` round trip, against a `redis-server` the
//! bench starts on a free loopback port.
//!
//! `cargo bench -p mcp-policy-redis`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_policy::{Evaluator, Policy, ToolCall};
use mcp_policy_redis::RedisStore;

/// Requests in flight at once in the throughput cases.
const CONCURRENT: usize = 64;

/// The grants of the concurrent decisions (eight counters).
const GRANTS: [&str; 8] =
    ["agent-0", "agent-1", "agent-2", "agent-3", "agent-4", "agent-5", "agent-6", "agent-7"];

fn redis(c: &mut Criterion) {
    if !support::available() {
        return;
    }
    let server = support::RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {
        "one": {"limits": [{"counter": "one", "window": "minute", "max": 9007199254740992}]},
        "two": {"limits": [{"counter": "two_a", "window": "minute", "max": 9007199254740992},
                           {"counter": "two_b", "window": "hour", "max": 9007199254740992, "scope": "global"}]},
        "sliding": {"limits": [{"counter": "s", "window": "minute", "max": 9007199254740992, "sliding": true}]}}}"#
        .parse()
        .unwrap();
    let store = rt.block_on(RedisStore::connect(&server.url())).unwrap();
    let evaluator = Evaluator::with_store(policy, store);
    let client = redis::Client::open(server.url()).unwrap();
    let con = rt.block_on(client.get_multiplexed_async_connection()).unwrap();

    let mut g = c.benchmark_group("redis");
    g.bench_function("bare_incr_round_trip", |b| {
        b.to_async(&rt).iter(|| {
            let mut con = con.clone();
            async move {
                let v: u64 =
                    redis::cmd("INCR").arg("bench:incr").query_async(&mut con).await.unwrap();
                black_box(v)
            }
        })
    });
    // The floor of any script: EVALSHA of a script that only reads the server's clock.
    let noop = redis::Script::new("return redis.call('TIME')[1]");
    g.bench_function("bare_evalsha_time_round_trip", |b| {
        b.to_async(&rt).iter(|| {
            let mut con = con.clone();
            let noop = &noop;
            async move {
                let v: String = noop.invoke_async(&mut con).await.unwrap();
                black_box(v)
            }
        })
    });
    // The charge script itself, called directly: the store's client side is the difference to
    // `decision_one_limit`.
    let charge = redis::Script::new(include_str!("../src/charge.lua"));
    g.bench_function("bare_charge_script_one_counter", |b| {
        b.to_async(&rt).iter(|| {
            let mut con = con.clone();
            let charge = &charge;
            async move {
                let v: Vec<redis::Value> = charge
                    .key("{mcp-policy}:bench:60f:g:agent-1")
                    .arg(1)
                    .arg(60_000_000u64)
                    .arg("0")
                    .arg(9_007_199_254_740_992u64)
                    .arg(1)
                    .invoke_async(&mut con)
                    .await
                    .unwrap();
                black_box(v)
            }
        })
    });
    for tool in ["one", "two", "sliding"] {
        g.bench_function(format!("decision_{tool}_limit"), |b| {
            let call = ToolCall::new(tool).with_grant("agent-1");
            b.to_async(&rt)
                .iter(|| async { black_box(evaluator.evaluate_async(&call).await.kind()) })
        });
    }
    g.finish();

    // Throughput: 64 requests in flight at once on one connection (the multiplexer pipelines
    // them), as 64 concurrent tasks of a server would: 64 decisions with one limit, next to 64
    // bare `INCR`s. Each iteration waits for all 64.
    let evaluator = std::sync::Arc::new(evaluator);
    let mut g = c.benchmark_group("redis_concurrent");
    g.throughput(criterion::Throughput::Elements(CONCURRENT as u64));
    g.bench_function("incr_64_in_flight", |b| {
        b.to_async(&rt).iter(|| {
            let con = con.clone();
            async move {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..CONCURRENT {
                    let mut con = con.clone();
                    set.spawn(async move {
                        let v: u64 = redis::cmd("INCR")
                            .arg("bench:incr")
                            .query_async(&mut con)
                            .await
                            .unwrap();
                        v
                    });
                }
                black_box(set.join_all().await.len())
            }
        })
    });
    g.bench_function("decisions_64_in_flight", |b| {
        b.to_async(&rt).iter(|| {
            let evaluator = evaluator.clone();
            async move {
                let mut set = tokio::task::JoinSet::new();
                for i in 0..CONCURRENT {
                    let evaluator = evaluator.clone();
                    set.spawn(async move {
                        let grant = GRANTS[i % GRANTS.len()];
                        let call = ToolCall::new("one").with_grant(grant);
                        evaluator.evaluate_async(&call).await.is_allowed()
                    });
                }
                let allowed = set.join_all().await;
                assert!(allowed.iter().all(|a| *a));
                black_box(allowed.len())
            }
        })
    });
    g.finish();
    drop(con);
}

criterion_group!(benches, redis);
criterion_main!(benches);
