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
        "one": {"limits": [{"counter": "one", "window": "minute", "max": 1000000000000000}]},
        "two": {"limits": [{"counter": "two_a", "window": "minute", "max": 9007199254740992},
                           {"counter": "two_b", "window": "hour", "max": 9007199254740992, "scope": "global"}]},
        "sliding": {"limits": [{"counter": "s", "window": "minute", "max": 9007199254740992, "sliding": true}]}}}"#
        .parse()
        .unwrap();
    let store = rt.block_on(RedisStore::connect(&server.url())).unwrap();
    let evaluator = Evaluator::with_store(policy, store);
    let client = redis::Client::open(server.url()).unwrap();
    let con = rt.block_on(client.get_multiplexed_async_connection()).unwrap();
    // Server-side time per command (`INFO commandstats`), printed after each case: it moves
    // much less with the machine's load than the round trips do.
    let mut stats = client.get_connection().unwrap();
    server_cost(&mut stats, "");

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
    server_cost(&mut stats, "bare_incr_round_trip");
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
    server_cost(&mut stats, "bare_evalsha_time_round_trip");
    // The one-counter script itself, called directly: the store's client side is the
    // difference to `decision_one_limit`.
    let charge_one = redis::Script::new(include_str!("../src/charge_one.lua"));
    g.bench_function("bare_charge_one_script", |b| {
        b.to_async(&rt).iter(|| {
            let mut con = con.clone();
            let charge_one = &charge_one;
            async move {
                let v: i64 = charge_one
                    .key("{mcp-policy}:bench:60f2:g:agent-1")
                    .arg(60)
                    .arg(1)
                    .arg(1_000_000_000_000_000u64)
                    .invoke_async(&mut con)
                    .await
                    .unwrap();
                black_box(v)
            }
        })
    });
    server_cost(&mut stats, "bare_charge_one_script");
    // The batch script with a batch of one (what a decision with one fixed limit ran before
    // the one-counter script).
    let charge = redis::Script::new(include_str!("../src/charge.lua"));
    g.bench_function("bare_charge_script_one_counter", |b| {
        b.to_async(&rt).iter(|| {
            let mut con = con.clone();
            let charge = &charge;
            async move {
                let v: Vec<redis::Value> = charge
                    .key("{mcp-policy}:bench:60f2:g:agent-2")
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
    server_cost(&mut stats, "bare_charge_script_one_counter");
    for tool in ["one", "two", "sliding"] {
        g.bench_function(format!("decision_{tool}_limit"), |b| {
            let call = ToolCall::new(tool).with_grant("agent-1");
            b.to_async(&rt)
                .iter(|| async { black_box(evaluator.evaluate_async(&call).await.kind()) })
        });
        server_cost(&mut stats, &format!("decision_{tool}_limit"));
    }
    g.finish();
    interleaved(&rt, &con, &evaluator, &noop);

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
    server_cost(&mut stats, "incr_64_in_flight");
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
    server_cost(&mut stats, "decisions_64_in_flight");
    g.finish();
    drop(con);
}

/// The ratio to a bare `INCR` with the load shared fairly: each round times one `INCR`, one
/// bare `EVALSHA` (reading `TIME`) and one decision with one fixed-window limit, back to back,
/// so that the machine's load (which moves loopback round trips by tens of percent from one
/// second to the next) weighs on all three alike. Prints the medians and their ratios.
fn interleaved(
    rt: &tokio::runtime::Runtime,
    con: &redis::aio::MultiplexedConnection,
    evaluator: &Evaluator<RedisStore>,
    noop: &redis::Script,
) {
    let rounds = if std::env::args().any(|a| a == "--test") { 100 } else { 20_000 };
    let call = ToolCall::new("one").with_grant("agent-3");
    let (mut incr, mut evalsha, mut decision) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        let mut con = con.clone();
        for _ in 0..rounds {
            let t = std::time::Instant::now();
            let v: u64 = redis::cmd("INCR").arg("bench:incr").query_async(&mut con).await.unwrap();
            incr.push(t.elapsed());
            black_box(v);
            let t = std::time::Instant::now();
            let v: String = noop.invoke_async(&mut con).await.unwrap();
            evalsha.push(t.elapsed());
            black_box(v);
            let t = std::time::Instant::now();
            let d = evaluator.evaluate_async(&call).await;
            decision.push(t.elapsed());
            assert!(d.is_allowed(), "{}", d.message());
        }
    });
    let median = |v: &mut Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e6
    };
    let (i, e, d) = (median(&mut incr), median(&mut evalsha), median(&mut decision));
    eprintln!(
        "interleaved, {rounds} rounds, medians: INCR {i:.1} µs; EVALSHA (TIME) {e:.1} µs ({:.2}x); \
         decision, one fixed-window limit {d:.1} µs ({:.2}x INCR)",
        e / i,
        d / i
    );
}

/// Prints the server's time per command since the last call (`INFO commandstats`), and resets
/// the statistics.
fn server_cost(stats: &mut redis::Connection, after: &str) {
    let info: String = redis::cmd("INFO").arg("commandstats").query(stats).unwrap();
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(stats).unwrap();
    if after.is_empty() {
        return;
    }
    let mut line = format!("server time per call, {after}:");
    for l in info.lines().filter_map(|l| l.strip_prefix("cmdstat_")) {
        let Some((name, fields)) = l.split_once(':') else { continue };
        if matches!(name, "info" | "config" | "client|setinfo" | "script|load" | "hello") {
            continue;
        }
        let field = |k: &str| {
            fields.split(',').find_map(|f| f.strip_prefix(k)?.strip_prefix('=')).unwrap_or("?")
        };
        line.push_str(&format!(
            " {name} {} µs ({} calls);",
            field("usec_per_call"),
            field("calls")
        ));
    }
    eprintln!("{line}");
}

criterion_group!(benches, redis);
criterion_main!(benches);
