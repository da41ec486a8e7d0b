//! The Redis store against a real `redis-server` that each test starts on a free loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_policy::{DecisionKind, Evaluator, Policy, ToolCall};
use mcp_policy_redis::{RedisOptions, RedisStore};
use redis::Commands;
use support::RedisServer;

fn policy(doc: serde_json::Value) -> Policy {
    Policy::from_json_str(&doc.to_string()).unwrap()
}

async fn evaluator(server: &RedisServer, doc: serde_json::Value) -> Evaluator<RedisStore> {
    let store = RedisStore::connect_with(
        &server.url(),
        RedisOptions::new().timeout(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    Evaluator::with_store(policy(doc), store)
}

fn global_limit(max: u64) -> serde_json::Value {
    serde_json::json!({"version": "1", "default": "deny", "tools": {"t": {"limits": [
        {"counter": "c", "window": "hour", "max": max, "scope": "global"}]}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_max_admitted_across_four_evaluators_in_tasks() {
    if !support::available() {
        return;
    }
    let server = RedisServer::start();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let e = Arc::new(evaluator(&server, global_limit(100)).await);
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0;
            for _ in 0..100 {
                if e.evaluate_async(&ToolCall::new("t")).await.is_allowed() {
                    admitted += 1;
                }
            }
            admitted
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 100);
}

/// Run by `exactly_max_admitted_across_four_processes` in child processes.
#[tokio::test]
#[ignore = "a worker for the multi-process test"]
async fn worker() {
    let Ok(url) = std::env::var("MCP_POLICY_REDIS_WORKER_URL") else { return };
    let store = RedisStore::connect_with(&url, RedisOptions::new().timeout(Duration::from_secs(1)))
        .await
        .unwrap();
    let e = Evaluator::with_store(policy(global_limit(100)), store);
    let mut admitted = 0;
    for _ in 0..100 {
        if e.evaluate_async(&ToolCall::new("t")).await.is_allowed() {
            admitted += 1;
        }
    }
    println!("ADMITTED {admitted}");
}

#[test]
fn exactly_max_admitted_across_four_processes() {
    if !support::available() {
        return;
    }
    let server = RedisServer::start();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", "worker", "--ignored", "--nocapture", "--test-threads", "1"])
                .env("MCP_POLICY_REDIS_WORKER_URL", server.url())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let n: u32 = text
            .split("ADMITTED ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no count from a worker: {text}"))
            .parse()
            .unwrap();
        total += n;
    }
    assert_eq!(total, 100);
}

#[tokio::test]
async fn a_refused_multi_limit_call_charges_nothing() {
    if !support::available() {
        return;
    }
    let server = RedisServer::start();
    let e = evaluator(
        &server,
        serde_json::json!({"version": "1", "default": "allow",
        "all_tools": {"limits": [{"counter": "calls", "window": "hour", "max": 3}]},
        "tools": {"t": {"limits": [{"counter": "t", "window": "hour", "max": 1}]}}}),
    )
    .await;
    let call = |tool: &'static str| ToolCall::new(tool).with_grant("g");
    assert_eq!(e.evaluate_async(&call("t")).await.kind(), DecisionKind::Allow);
    for _ in 0..5 {
        let d = e.evaluate_async(&call("t")).await;
        assert_eq!(d.kind(), DecisionKind::Limit);
        assert_eq!(d.rule(), "/tools/t/limits/0");
    }
    // `calls` holds 1: two more calls of another tool fit, the third does not.
    assert_eq!(e.evaluate_async(&call("u")).await.kind(), DecisionKind::Allow);
    assert_eq!(e.evaluate_async(&call("u")).await.kind(), DecisionKind::Allow);
    let d = e.evaluate_async(&call("u")).await;
    assert_eq!(d.kind(), DecisionKind::Limit);
    assert!(d.retry_after().unwrap() <= Duration::from_secs(3600));
    let mut con = server.connection();
    let count: u64 = con.get("{mcp-policy}:calls:3600f2:g:g").unwrap();
    assert_eq!(count, 3);
}

#[tokio::test]
async fn rollback_returns_the_units() {
    if !support::available() {
        return;
    }
    let server = RedisServer::start();
    let e = evaluator(&server, global_limit(1)).await;
    let call = ToolCall::new("t");
    let mut d = e.evaluate_async(&call).await;
    assert!(d.is_allowed());
    e.rollback_async(&mut d).await.unwrap();
    assert!(e.evaluate_async(&call).await.is_allowed());
    assert_eq!(e.evaluate_async(&call).await.kind(), DecisionKind::Limit);
}

#[tokio::test]
async fn sliding_windows_do_not_restart_at_a_boundary() {
    if !support::available() {
        return;
    }
    let server = RedisServer::start();
    let e = evaluator(
        &server,
        serde_json::json!({"version": "1", "default": "deny", "tools": {"t": {"limits": [
        {"counter": "s", "window": 2, "max": 2, "scope": "global", "sliding": true}]}}}),
    )
    .await;
    let call = ToolCall::new("t");
    assert!(e.evaluate_async(&call).await.is_allowed());
    assert!(e.evaluate_async(&call).await.is_allowed());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // A fixed 2 s window might have restarted by now; the sliding one still counts both.
    let d = e.evaluate_async(&call).await;
    assert_eq!(d.kind(), DecisionKind::Limit);
    let wait = d.retry_after().unwrap();
    assert!(wait <= Duration::from_millis(1000), "{wait:?}");
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    assert!(e.evaluate_async(&call).await.is_allowed());
}

#[tokio::test]
async fn keys_follow_the_documented_layout_and_expire() {
    if !support::available() {
        return;
    }
    let server = RedisServer::start();
    let e = evaluator(
        &server,
        serde_json::json!({"version": "1", "default": "deny", "tools": {
        "t": {"limits": [{"counter": "c", "window": 1, "max": 5, "scope": "session"}]}}}),
    )
    .await;
    let call = ToolCall::new("t").with_grant("alice:1").with_session("s{1}");
    assert!(e.evaluate_async(&call).await.is_allowed());
    let mut con = server.connection();
    let keys: Vec<String> = con.keys("*").unwrap();
    assert_eq!(keys, vec!["{mcp-policy}:c:1f2:s:alice%3A1:s%7B1%7D".to_owned()]);
    // A fixed window's count is an integer that expires with its window (1 s here).
    let count: u64 = con.get(&keys[0]).unwrap();
    assert_eq!(count, 1);
    let ttl: i64 = con.pttl(&keys[0]).unwrap();
    assert!((0..1000).contains(&ttl), "{ttl}");
    let expiry: i64 = redis::cmd("PEXPIRETIME").arg(&keys[0]).query(&mut con).unwrap();
    assert_eq!((expiry + 1) % 1000, 0, "the window's last millisecond: {expiry}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let keys: Vec<String> = con.keys("*").unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test]
async fn denies_within_the_timeout_while_redis_is_down_and_recovers() {
    if !support::available() {
        return;
    }
    let mut server = RedisServer::start();
    let e = evaluator(&server, global_limit(1000)).await;
    let call = ToolCall::new("t");
    assert!(e.evaluate_async(&call).await.is_allowed());
    server.stop();
    let start = Instant::now();
    let d = e.evaluate_async(&call).await;
    assert_eq!(d.kind(), DecisionKind::Deny);
    assert!(d.message().contains("fail-closed"), "{}", d.message());
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    // Back on the same port, with an empty script cache: the store reconnects and reloads.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = e.evaluate_async(&call).await;
        if d.is_allowed() {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", d.message());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_flushed_script_cache_is_reloaded() {
    if !support::available() {
        return;
    }
    let server = RedisServer::start();
    let e = evaluator(&server, global_limit(10)).await;
    assert!(e.evaluate_async(&ToolCall::new("t")).await.is_allowed());
    let mut con = server.connection();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut con).unwrap();
    assert!(e.evaluate_async(&ToolCall::new("t")).await.is_allowed());
}

#[tokio::test]
async fn fail_open_lets_calls_through_uncounted() {
    if !support::available() {
        return;
    }
    let mut server = RedisServer::start();
    let store = RedisStore::connect_with(
        &server.url(),
        RedisOptions::new().timeout(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let e = Evaluator::with_store(policy(global_limit(1)), store).fail_open_on_store_error(true);
    server.stop();
    let d = e.evaluate_async(&ToolCall::new("t")).await;
    assert_eq!(d.kind(), DecisionKind::Allow);
    assert!(d.message().contains("fail-open"));
}

#[tokio::test]
async fn large_counts_and_units_stay_exact() {
    if !support::available() {
        return;
    }
    let server = RedisServer::start();
    let max = 9_007_199_254_740_992u64;
    let e = evaluator(&server, serde_json::json!({"version": "1", "default": "deny", "tools": {"spend": {"limits": [
        {"counter": "eur", "window": "day", "max": max, "increment_from": "args.amount", "scope": "global"}]}}}))
    .await;
    let big = serde_json::json!({"amount": max - 1});
    let one = serde_json::json!({"amount": 1});
    assert!(e.evaluate_async(&ToolCall::new("spend").with_arguments(&big)).await.is_allowed());
    assert!(e.evaluate_async(&ToolCall::new("spend").with_arguments(&one)).await.is_allowed());
    assert_eq!(
        e.evaluate_async(&ToolCall::new("spend").with_arguments(&one)).await.kind(),
        DecisionKind::Limit
    );
}

/// What Redis holds for counter `b` of `a_check_answers_like_a_charge_and_writes_nothing`.
fn dump(con: &mut redis::Connection, sliding: bool) -> String {
    if sliding {
        let fields: Vec<(String, String)> = con.hgetall("{mcp-policy}:b:60s:g:g").unwrap();
        format!("{fields:?}")
    } else {
        let count: Option<String> = con.get("{mcp-policy}:b:60f2:g:g").unwrap();
        let ttl: i64 = redis::cmd("PEXPIRETIME").arg("{mcp-policy}:b:60f2:g:g").query(con).unwrap();
        format!("{count:?} {ttl}")
    }
}

#[tokio::test]
async fn a_check_answers_like_a_charge_and_writes_nothing() {
    if !support::available() {
        return;
    }
    use mcp_policy::{
        AsyncCounterStore, ChargeOutcome, ChargeRequest, CounterKey, ScopeKey, Timestamp,
        WindowSpec,
    };
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let req = |counter, max, units, sliding| ChargeRequest {
        key: CounterKey { counter, scope: ScopeKey::Grant("g") },
        window: WindowSpec { seconds: 60, sliding },
        max,
        units,
    };
    let now = Timestamp::EPOCH;
    let mut con = server.connection();
    for sliding in [false, true] {
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
        let batch = [req("a", 2, 1, sliding), req("b", 1, 1, sliding)];
        for _ in 0..3 {
            let checked = store.check_async(now, &batch).await.unwrap();
            assert!(matches!(checked, ChargeOutcome::Admitted { .. }), "{checked:?}");
        }
        let keys: Vec<String> = con.keys("*").unwrap();
        assert!(keys.is_empty(), "a check wrote {keys:?}");
        assert!(matches!(
            store.charge_async(now, &batch).await.unwrap(),
            ChargeOutcome::Admitted { .. }
        ));
        let before = dump(&mut con, sliding);
        let checked = store.check_async(now, &batch).await.unwrap();
        assert!(matches!(checked, ChargeOutcome::Refused { index: 1, .. }), "{checked:?}");
        let after = dump(&mut con, sliding);
        assert_eq!(before, after, "a refused check writes nothing");
        // `a` still has room for one: the checks charged nothing.
        assert!(matches!(
            store.charge_async(now, &[req("a", 2, 1, sliding)]).await.unwrap(),
            ChargeOutcome::Admitted { .. }
        ));
        let never = store.check_async(now, &[req("c", 1, 2, sliding)]).await.unwrap();
        assert!(
            matches!(never, ChargeOutcome::Refused { index: 0, retry_after: None }),
            "{never:?}"
        );
    }
}

#[tokio::test]
async fn approval_prompts_stop_when_the_redis_limit_is_exhausted() {
    if !support::available() {
        return;
    }
    let server = RedisServer::start();
    let e = evaluator(
        &server,
        serde_json::json!({"version": "1", "default": "deny",
        "all_tools": {"limits": [{"counter": "calls", "window": "hour", "max": 3}]},
        "tools": {"refund": {"approve_if": [{"conditions": []}]}}}),
    )
    .await;
    let (mut prompts, mut limited) = (0, 0);
    for i in 0..20 {
        let args = serde_json::json!({ "order": i });
        let call = ToolCall::new("refund").with_arguments(&args).with_grant("g");
        let d = e.evaluate_async(&call).await;
        match d.kind() {
            DecisionKind::Approve => {
                prompts += 1;
                let key = d.approval_key().unwrap().to_owned();
                let again = e.evaluate_async(&call.with_approval_key(&key)).await;
                assert_eq!(again.kind(), DecisionKind::Allow);
            }
            DecisionKind::Limit => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((prompts, limited), (3, 17));
    let mut con = server.connection();
    let count: u64 = con.get("{mcp-policy}:calls:3600f2:g:g").unwrap();
    assert_eq!(count, 3, "the prompts charged nothing");
}

#[tokio::test]
async fn connection_errors_carry_a_kind_and_a_source() {
    use mcp_policy::StoreErrorKind;
    use std::error::Error as _;

    let e = RedisStore::connect("not a url").await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Config, "{e}");
    assert!(e.source().is_some(), "{e}");

    // A loopback port nobody listens on: refused (or timed out), never a protocol error.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = RedisOptions::new().timeout(Duration::from_millis(300));
    let e =
        RedisStore::connect_with(&format!("redis://127.0.0.1:{port}/"), options).await.unwrap_err();
    assert!(
        matches!(e.kind(), StoreErrorKind::Unavailable | StoreErrorKind::Timeout),
        "{:?}: {e}",
        e.kind()
    );
    assert!(e.source().is_some(), "{e}");
}

#[tokio::test]
async fn one_counter_alone_and_in_a_batch_share_one_count() {
    if !support::available() {
        return;
    }
    // `a` charges only `calls`: the one-counter script. `b` charges `calls` and `b`: the batch
    // script. Both must read and write the same count.
    let server = RedisServer::start();
    let e = evaluator(
        &server,
        serde_json::json!({"version": "1", "default": "allow",
        "all_tools": {"limits": [{"counter": "calls", "window": "hour", "max": 3, "scope": "global"}]},
        "tools": {"b": {"limits": [{"counter": "b", "window": "hour", "max": 10, "scope": "global"}]}}}),
    )
    .await;
    let mut con = server.connection();
    let count = |con: &mut redis::Connection| -> u64 {
        con.get("{mcp-policy}:calls:3600f2:global").unwrap()
    };
    let mut first_a = e.evaluate_async(&ToolCall::new("a")).await;
    assert!(first_a.is_allowed());
    let mut first_b = e.evaluate_async(&ToolCall::new("b")).await;
    assert!(first_b.is_allowed());
    assert!(e.evaluate_async(&ToolCall::new("a")).await.is_allowed());
    assert_eq!(count(&mut con), 3);
    let limited = e.evaluate_async(&ToolCall::new("a")).await;
    assert_eq!(limited.kind(), DecisionKind::Limit);
    let wait = limited.retry_after().unwrap();
    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(3600), "{wait:?}");
    assert_eq!(e.evaluate_async(&ToolCall::new("b")).await.kind(), DecisionKind::Limit);
    assert_eq!(count(&mut con), 3, "refused calls charge nothing");
    let b: u64 = con.get("{mcp-policy}:b:3600f2:global").unwrap();
    assert_eq!(b, 1, "a batch refused by one counter charges none");
    // A rollback of either kind returns its unit to the same count.
    e.rollback_async(&mut first_a).await.unwrap();
    assert_eq!(count(&mut con), 2);
    e.rollback_async(&mut first_b).await.unwrap();
    assert_eq!(count(&mut con), 1);
    let b: u64 = con.get("{mcp-policy}:b:3600f2:global").unwrap();
    assert_eq!(b, 0);
    assert!(e.evaluate_async(&ToolCall::new("b")).await.is_allowed());
    assert!(e.evaluate_async(&ToolCall::new("a")).await.is_allowed());
    assert_eq!(e.evaluate_async(&ToolCall::new("a")).await.kind(), DecisionKind::Limit);
}

#[tokio::test]
async fn a_rollback_never_returns_units_to_a_later_window() {
    if !support::available() {
        return;
    }
    let server = RedisServer::start();
    let e = evaluator(
        &server,
        serde_json::json!({"version": "1", "default": "deny", "tools": {"t": {"limits": [
        {"counter": "c", "window": 1, "max": 1, "scope": "global"}]}}}),
    )
    .await;
    let key = "{mcp-policy}:c:1f2:global";
    let mut con = server.connection();
    let call = ToolCall::new("t");
    // Retried only when the 1 s window ends between the second charge and the read.
    for attempt in 0..5 {
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
        let mut earlier = e.evaluate_async(&call).await;
        assert!(earlier.is_allowed());
        let first: i64 = redis::cmd("PEXPIRETIME").arg(key).query(&mut con).unwrap();
        // Into the next window: the first key is gone, a charge starts a new count.
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now: i64 = redis::cmd("PEXPIRETIME").arg(key).query(&mut con).unwrap();
            if now != first {
                break;
            }
        }
        let later = e.evaluate_async(&call).await;
        assert!(later.is_allowed(), "{}", later.message());
        e.rollback_async(&mut earlier).await.unwrap();
        let count: Option<u64> = con.get(key).unwrap();
        match count {
            Some(n) => {
                assert_eq!(n, 1, "the refund of an ended window reached the next one");
                return;
            }
            None => eprintln!("attempt {attempt}: the window ended before the read; again"),
        }
    }
    panic!("five windows ended before a read");
}

#[tokio::test]
async fn count_reports_what_a_charge_sees() {
    if !support::available() {
        return;
    }
    use mcp_policy::{
        AsyncCounterStore, ChargeOutcome, ChargeRequest, CounterKey, ScopeKey, Timestamp,
        WindowSpec,
    };
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let req = |counter, units, sliding| ChargeRequest {
        key: CounterKey { counter, scope: ScopeKey::Grant("g") },
        window: WindowSpec { seconds: 60, sliding },
        max: 10,
        units,
    };
    let now = Timestamp::EPOCH;
    for sliding in [false, true] {
        assert_eq!(store.count(&req("a", 1, sliding)).await.unwrap(), 0);
        // Alone (the one-counter script for a fixed window), then in a batch.
        let one = store.charge_async(now, &[req("a", 3, sliding)]).await.unwrap();
        assert!(matches!(one, ChargeOutcome::Admitted { .. }), "{one:?}");
        let two = store.charge_async(now, &[req("a", 2, sliding), req("b", 4, sliding)]).await;
        assert!(matches!(two.unwrap(), ChargeOutcome::Admitted { .. }));
        assert_eq!(store.count(&req("a", 1, sliding)).await.unwrap(), 5);
        assert_eq!(store.count(&req("b", 1, sliding)).await.unwrap(), 4);
        // A refused charge adds nothing.
        let refused = store.charge_async(now, &[req("a", 6, sliding)]).await.unwrap();
        assert!(matches!(refused, ChargeOutcome::Refused { index: 0, .. }), "{refused:?}");
        assert_eq!(store.count(&req("a", 1, sliding)).await.unwrap(), 5);
    }
    let mut con = server.connection();
    let _: () = con.set("{mcp-policy}:x:60f2:g:g", "not a number").unwrap();
    let e = store.count(&req("x", 1, false)).await.unwrap_err();
    assert!(e.to_string().contains("does not hold an integer"), "{e}");
}

#[tokio::test]
async fn a_count_without_expiry_gets_its_window_and_a_corrupt_one_denies() {
    if !support::available() {
        return;
    }
    let server = RedisServer::start();
    let e = evaluator(&server, global_limit(10)).await;
    let key = "{mcp-policy}:c:3600f2:global";
    let mut con = server.connection();
    // Written by hand, without expiry: counted, and given the end of its window.
    let _: () = con.set(key, 9).unwrap();
    assert!(e.evaluate_async(&ToolCall::new("t")).await.is_allowed());
    let count: u64 = con.get(key).unwrap();
    assert_eq!(count, 10);
    let ttl: i64 = con.pttl(key).unwrap();
    assert!(ttl > 0 && ttl <= 3_600_000, "{ttl}");
    assert_eq!(e.evaluate_async(&ToolCall::new("t")).await.kind(), DecisionKind::Limit);
    // Not an integer: the store fails, and the evaluator denies.
    let _: () = con.set(key, "ten").unwrap();
    let d = e.evaluate_async(&ToolCall::new("t")).await;
    assert_eq!(d.kind(), DecisionKind::Deny);
    assert!(d.message().contains("fail-closed"), "{}", d.message());
}

#[tokio::test]
async fn counts_just_under_2_pow_53_stay_exact_on_one_counter() {
    if !support::available() {
        return;
    }
    let server = RedisServer::start();
    // max + units <= 2^53: the one-counter script.
    let max = 9_007_199_254_740_991u64;
    let e = evaluator(&server, serde_json::json!({"version": "1", "default": "deny", "tools": {"spend": {"limits": [
        {"counter": "eur", "window": "day", "max": max, "increment_from": "args.amount", "scope": "global"}]}}}))
    .await;
    let big = serde_json::json!({"amount": max - 1});
    let one = serde_json::json!({"amount": 1});
    assert!(e.evaluate_async(&ToolCall::new("spend").with_arguments(&big)).await.is_allowed());
    assert!(e.evaluate_async(&ToolCall::new("spend").with_arguments(&one)).await.is_allowed());
    assert_eq!(
        e.evaluate_async(&ToolCall::new("spend").with_arguments(&one)).await.kind(),
        DecisionKind::Limit
    );
    let mut con = server.connection();
    let count: u64 = con.get("{mcp-policy}:eur:86400f2:global").unwrap();
    assert_eq!(count, max);
}

#[tokio::test]
async fn a_server_without_pexpiretime_is_refused_at_connect() {
    use mcp_policy::StoreErrorKind;
    use std::io::{Read, Write};

    // A stand-in for Redis 6: it answers every command with an unknown-command error.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    // One error per command: each command is an array (`*N`) at a line start.
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let commands = text.split("\r\n").filter(|l| l.starts_with('*')).count();
                    for _ in 0..commands {
                        if stream.write_all(b"-ERR unknown command\r\n").is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let options = RedisOptions::new().timeout(Duration::from_millis(500));
    let e =
        RedisStore::connect_with(&format!("redis://127.0.0.1:{port}/"), options).await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Config, "{e}");
    assert!(e.to_string().contains("Redis 7.0 or later"), "{e}");
}
