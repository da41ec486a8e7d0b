//! Clients of protocol revision 2026-07-28 over the HTTP listener: no `initialize`, no
//! `Mcp-Session-Id`; every POST carries `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and the
//! revision in its `_meta`. A raw reqwest client speaks it to the gateway; the upstream is
//! rmcp's own streamable-HTTP server (which serves 2026-07-28 without sessions), in this test
//! process, recording every call it runs, so that the test sees what reached it.
//!
//! Shown here: each request is decided with the identity of its own request (the trusted
//! header), in no session (a `session` limit counts in the grant's one "no session" bucket);
//! the gateway's approval rounds (`input_required`) are bound to the identity; the upstream's own
//! `input_required` rounds pass through unchanged, and the retry that carries the upstream's
//! `requestState` is charged once with its call, once; anything else is decided as a new call;
//! both rounds on one call. A sessionless request of an older revision keeps its 400.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod http_support;

use http_support::inline::{Client, Upstream, VERSION, meta, session_client, sure};
use http_support::{gateway, text, write};
use serde_json::{Value, json};

const POLICY: &str = r#"{"version": "1", "default": "deny", "tools": {
    "read": {"limits": [{"counter": "read", "window": "hour", "max": 3}]},
    "create": {"approve_if": [{"conditions": [], "reason": "creating needs a human"}]},
    "ask": {"limits": [{"counter": "ask", "window": "hour", "max": 2}]},
    "other": {"limits": [{"counter": "other", "window": "hour", "max": 1}]},
    "guarded": {"approve_if": [{"conditions": [], "reason": "guarded needs a human"}],
                "limits": [{"counter": "guarded", "window": "hour", "max": 1}]},
    "per_session": {"limits": [{"counter": "ps", "window": "hour", "max": 2, "scope": "session"}]}}}"#;

/// The upstream's tools (it lists `secret` too, which only the default denies).
const TOOLS: &[&str] = &["read", "create", "ask", "other", "guarded", "per_session", "secret"];

fn approve() -> Value {
    json!({"mcp-policy/approval": {"action": "accept", "content": {"approve": true}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_2026_07_28_over_http_without_a_session() {
    let upstream = Upstream::start(TOOLS, false).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.json", POLICY);
    let gw =
        gateway(&policy, &["--upstream", &upstream.url, "--trusted-header", "x-user"], &[]).await;
    let alice = Client::new(&gw.mcp(), "alice");
    let bob = Client::new(&gw.mcp(), "bob");

    // A request without a session of an older revision keeps its 400.
    let old = reqwest::Client::new()
        .post(gw.mcp())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("x-user", "alice")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 400);
    // Without its identity: 401.
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta()}});
    let anonymous = alice.post(&body, &["x-user"]).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // Discovery reaches the upstream, which offers 2026-07-28; no session is made.
    let d = alice.request(1, "server/discover", json!({"_meta": meta()})).await;
    let versions = d["result"]["supportedVersions"].as_array().unwrap_or_else(|| panic!("{d}"));
    assert!(versions.contains(&json!(VERSION)), "{d}");
    // The listing is filtered: `secret` only the default denies.
    let l = alice.request(2, "tools/list", json!({"_meta": meta()})).await;
    let mut names: Vec<&str> = l["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["ask", "create", "guarded", "other", "per_session", "read"], "{l}");

    // Headers that contradict the body, or a body that does not name its revision: 400, and
    // nothing reaches the upstream.
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "read", "arguments": {}, "_meta": meta()}});
    let r = alice.post(&call, &[]).header("mcp-name", "create").send().await.unwrap();
    assert_eq!(r.status(), 400, "a `Mcp-Name` other than the body's");
    let r = alice.post(&call, &["mcp-method"]).send().await.unwrap();
    assert_eq!(r.status(), 400, "no `Mcp-Method`");
    let r = alice.post(&call, &["mcp-name"]).send().await.unwrap();
    assert_eq!(r.status(), 400, "no `Mcp-Name`");
    let mut no_meta = call.clone();
    no_meta["params"]["_meta"] = json!({});
    let r = alice.post(&no_meta, &[]).send().await.unwrap();
    assert_eq!(r.status(), 400, "no revision in `_meta`");
    let r = alice.post(&call, &["mcp-protocol-version"]).send().await.unwrap();
    assert_eq!(r.status(), 400, "`_meta` names 2026-07-28 without the header");
    let r = alice.post(&json!([call]), &[]).send().await.unwrap();
    assert_eq!(r.status(), 400, "no batches");
    assert!(upstream.ran().is_empty());
    // No event stream and no session to end.
    for req in [reqwest::Client::new().get(gw.mcp()), reqwest::Client::new().delete(gw.mcp())] {
        let r = req
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", VERSION)
            .header("x-user", "alice")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    }

    // Each request is decided with its own identity: alice's `read` is limited after 3, bob's
    // count is his own.
    for i in 0..3 {
        assert_eq!(text(&alice.call(10 + i, "read", json!({"i": i}), None).await), "ran read");
    }
    let r = alice.call(13, "read", json!({"i": 3}), None).await;
    assert_eq!(r["isError"], true, "{r}");
    assert!(text(&r).contains("Rate limited"), "{r}");
    assert_eq!(text(&bob.call(14, "read", json!({}), None).await), "ran read");
    assert_eq!(upstream.ran().len(), 4, "the limited call never reached the upstream");

    // The same request id from two clients at once: each gets its own answer.
    let (a, b) = tokio::join!(
        alice.call(99, "per_session", json!({"who": "a"}), None),
        bob.call(99, "per_session", json!({"who": "b"}), None)
    );
    assert_eq!((text(&a), text(&b)), ("ran per_session".into(), "ran per_session".into()));
    // No session: a `session` limit counts alice's calls from any of her clients in her one
    // "no session" bucket (2 in all); bob's are his.
    let alice2 = Client::new(&gw.mcp(), "alice");
    assert_eq!(text(&alice2.call(15, "per_session", json!({}), None).await), "ran per_session");
    let r = alice.call(16, "per_session", json!({}), None).await;
    assert_eq!(r["isError"], true, "alice's third call without a session: {r}");
    assert_eq!(text(&bob.call(17, "per_session", json!({}), None).await), "ran per_session");
    let before = upstream.ran().len();

    // The gateway's approval rounds, bound to the identity.
    let r = alice.call(20, "create", json!({"n": 1}), None).await;
    assert_eq!(r["resultType"], "input_required", "{r}");
    assert!(
        r["inputRequests"]["mcp-policy/approval"]["params"]["message"]
            .as_str()
            .unwrap()
            .contains("create")
    );
    let token = r["requestState"].as_str().unwrap().to_owned();
    let r = bob.call(21, "create", json!({"n": 1}), Some((&token, approve()))).await;
    assert_eq!(r["isError"], true, "another identity's round: {r}");
    assert!(text(&r).contains("matches no pending approval"), "{r}");
    let r = alice.call(22, "create", json!({"n": 1}), Some((&token, approve()))).await;
    assert_eq!(text(&r), "ran create", "{r}");
    let r = alice.call(23, "create", json!({"n": 1}), Some((&token, approve()))).await;
    assert_eq!(r["isError"], true, "a spent round: {r}");
    let mut after = upstream.ran();
    assert_eq!(after.len(), before + 1, "created once");
    let created = after.pop().unwrap();
    assert_eq!(created["tool"], "create");
    assert_eq!(created["state"], Value::Null, "the gateway's round never reaches the upstream");
    assert_eq!(created["responses"], Value::Null, "{created}");

    // The upstream's own `input_required`: relayed unchanged; the retry with its requestState
    // continues the call without a second charge (`ask` admits 2).
    let r = alice.call(30, "ask", json!({"q": 1}), None).await;
    assert_eq!(r["resultType"], "input_required", "{r}");
    assert_eq!(r["inputRequests"]["confirm"]["params"]["message"], "sure?", "{r}");
    let s1 = r["requestState"].as_str().unwrap().to_owned();
    assert!(s1.starts_with("ask-state-"), "the upstream's requestState, unchanged: {s1}");
    let r = alice.call(31, "ask", json!({"q": 2}), None).await;
    let s2 = r["requestState"].as_str().unwrap().to_owned();
    // `ask` is now exhausted for alice: her retries pass all the same, once each.
    let r = alice.call(32, "ask", json!({"q": 1}), Some((&s1, sure()))).await;
    assert_eq!(text(&r), "ran ask", "{r}");
    let last = upstream.ran().pop().unwrap();
    assert_eq!(last["state"], s1.as_str(), "the upstream gets its requestState back: {last}");
    assert_eq!(last["responses"], sure(), "and the client's answers: {last}");
    let n = upstream.ran().len();
    let r = alice.call(33, "ask", json!({"q": 1}), Some((&s1, sure()))).await;
    assert_eq!(r["isError"], true, "replayed: decided as new, and limited: {r}");
    let r = alice.call(34, "ask", json!({"q": 1}), Some(("ask-state-999", sure()))).await;
    assert_eq!(r["isError"], true, "forged: decided as new, and limited: {r}");
    let r = alice.call(35, "ask", json!({"q": 3}), Some((&s2, sure()))).await;
    assert_eq!(r["isError"], true, "other arguments: decided as new, and limited: {r}");
    assert_eq!(upstream.ran().len(), n, "none of those reached the upstream");
    // Another tool with alice's state: decided (and charged) as a new call of that tool.
    let r = alice.call(36, "other", json!({"q": 2}), Some((&s2, sure()))).await;
    assert_eq!(text(&r), "ran other", "{r}");
    let r = alice.call(37, "other", json!({}), None).await;
    assert_eq!(r["isError"], true, "`other` was charged for it: {r}");
    // Another identity with alice's state: a new call of bob's, charged to bob.
    let r = bob.call(38, "ask", json!({"q": 2}), Some((&s2, sure()))).await;
    assert_eq!(text(&r), "ran ask", "{r}");
    assert_eq!(upstream.ran().pop().unwrap()["state"], s2.as_str(), "passed through unchanged");
    bob.call(39, "ask", json!({"b": 1}), None).await;
    let r = bob.call(40, "ask", json!({"b": 2}), None).await;
    assert_eq!(r["isError"], true, "bob's retry was charged to bob: {r}");
    // Alice's own retry of s2 is still hers to use.
    let r = alice.call(41, "ask", json!({"q": 2}), Some((&s2, sure()))).await;
    assert_eq!(text(&r), "ran ask", "{r}");

    // Both rounds on one call: the gateway's first, then the upstream's (`guarded` admits 1).
    let r = alice.call(50, "guarded", json!({"g": 1}), None).await;
    assert_eq!(r["resultType"], "input_required", "{r}");
    assert!(r["inputRequests"]["mcp-policy/approval"].is_object(), "the gateway's round: {r}");
    let token = r["requestState"].as_str().unwrap().to_owned();
    let r = alice.call(51, "guarded", json!({"g": 1}), Some((&token, approve()))).await;
    assert_eq!(r["resultType"], "input_required", "{r}");
    assert!(r["inputRequests"]["confirm"].is_object(), "the upstream's round: {r}");
    let up = r["requestState"].as_str().unwrap().to_owned();
    assert!(up.starts_with("guarded-state-"), "{up}");
    let r = alice.call(52, "guarded", json!({"g": 1}), Some((&up, sure()))).await;
    assert_eq!(text(&r), "ran guarded", "no second approval, no second charge: {r}");
    let guarded = upstream.ran_of("guarded");
    assert_eq!(guarded.len(), 2, "{guarded:?}");
    assert_eq!(guarded[0]["state"], Value::Null);
    assert_eq!(guarded[1]["state"], up.as_str());
    assert_eq!(guarded[1]["responses"], sure(), "the gateway's answer never reaches it");

    gw.stop().await;
}

/// An upstream that speaks no revision without `initialize`: discovery through the gateway
/// answers "method not found" (a client then falls back to `initialize`), a sessionless call
/// reaches nothing the upstream runs, and `initialize` makes a session as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_without_2026_07_28_sends_the_client_to_initialize() {
    let upstream = Upstream::start(TOOLS, true).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.json", POLICY);
    let gw =
        gateway(&policy, &["--upstream", &upstream.url, "--trusted-header", "x-user"], &[]).await;
    let alice = Client::new(&gw.mcp(), "alice");
    let d = alice.request(1, "server/discover", json!({"_meta": meta()})).await;
    assert_eq!(d["error"]["code"], -32601, "{d}");
    assert!(d["error"]["message"].as_str().unwrap().contains("use `initialize`"), "{d}");
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "read", "arguments": {}, "_meta": meta()}});
    // A client that skips `server/discover`: the upstream refuses the request with 400 (it does
    // not know the revision), and so does the gateway, with no error of the new revision
    // (-32022 would tell a client of both eras that the server speaks it), so that such a
    // client falls back to `initialize`.
    let resp = alice.post(&body, &[]).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let answer = http_support::messages(resp).await;
    assert!(answer[0].get("error").is_some(), "{answer:?}");
    assert_ne!(answer[0]["error"]["code"], -32022, "{answer:?}");
    assert!(answer[0]["error"].get("data").is_none(), "{answer:?}");
    assert_eq!(answer[0]["id"], 2, "{answer:?}");
    assert!(upstream.ran().is_empty(), "nothing ran");

    let mut old = session_client(&gw, "alice");
    let init = old.initialize().await.unwrap();
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(text(&old.call(3, "read", json!({})).await), "ran read");
    assert_eq!(upstream.ran().len(), 1);
    gw.stop().await;
}

/// A command upstream gives no HTTP status to pass on: before relaying a request of 2026-07-28
/// without a session, the gateway asks it `server/discover` (with the request's `_meta`). The
/// filesystem server (npm, of an older revision) does not know the method: a client that skipped
/// discovery gets 400, as from an HTTP upstream of an older revision, and nothing reaches the
/// server (no file is written); with `initialize` the same call runs. `mcp-server-time` (PyPI,
/// on an SDK that offers 2026-07-28) serves such a request without a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_upstream_that_does_not_offer_2026_07_28_sends_the_client_to_initialize() {
    let Some(mut filesystem) = http_support::node_server("@modelcontextprotocol/server-filesystem")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    filesystem.push(root.clone().into());
    let policy = write(
        dir.path(),
        "policy.json",
        r#"{"version": "1", "default": "deny", "tools": {"write_file": {}, "get_current_time": {}}}"#,
    );
    let gw = gateway(&policy, &["--trusted-header", "x-user"], &filesystem).await;
    let alice = Client::new(&gw.mcp(), "alice");
    let made = root.join("made.txt");
    let args = json!({"path": made.to_str().unwrap(), "content": "x"});
    for id in [1, 2] {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "write_file", "arguments": args, "_meta": meta()}});
        let resp = alice.post(&body, &[]).send().await.unwrap();
        assert_eq!(resp.status(), 400, "request {id}");
        let answer = http_support::messages(resp).await;
        assert_eq!(answer[0]["id"], id, "{answer:?}");
        assert_eq!(answer[0]["error"]["code"], -32602, "{answer:?}");
        let message = answer[0]["error"]["message"].as_str().unwrap();
        assert!(message.contains("use `initialize`"), "{message}");
        assert_eq!(answer[0]["error"]["data"]["requested"], VERSION, "{answer:?}");
        assert_eq!(answer[0]["error"]["data"].as_object().unwrap().len(), 2, "{answer:?}");
        assert!(!made.exists(), "the refused call reached the filesystem server");
    }
    let mut old = session_client(&gw, "alice");
    old.initialize().await.unwrap();
    old.call(3, "write_file", args).await;
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "x");
    gw.stop().await;

    let time = http_support::deps_dir().join("venv/bin/mcp-server-time");
    if !time.exists() {
        http_support::skip("MCP_POLICY_REQUIRE_PYTHON", "`mcp-server-time` from PyPI");
        return;
    }
    let gw = gateway(&policy, &["--trusted-header", "x-user"], &[time.into_os_string()]).await;
    let alice = Client::new(&gw.mcp(), "alice");
    let body = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "get_current_time", "arguments": {"timezone": "UTC"}, "_meta": meta()}});
    let resp = alice.post(&body, &[]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let answer = http_support::messages(resp).await;
    assert!(text(&answer[0]["result"]).contains("UTC"), "{answer:?}");
    gw.stop().await;
}

/// One subject with two tokens whose claims differ: each request is decided with the claims of
/// its own token, whichever came first (the relay of an identity is also that of its claims).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_decided_with_the_claims_of_its_own_token() {
    let upstream = Upstream::start(TOOLS, false).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.json",
        r#"{"version": "1", "default": "deny", "tools": {"read": {"require": [{"conditions": [
            {"path": "context.claims.role", "op": "eq", "value": "admin"}]}]}}}"#,
    );
    let secret = write(dir.path(), "secret", http_support::SECRET);
    let secret = secret.to_str().unwrap();
    let args = [
        "--upstream",
        &upstream.url,
        "--jwt-secret-file",
        secret,
        "--audience",
        "gw",
        "--issuer",
        "idp",
    ];
    let gw = gateway(&policy, &args, &[]).await;
    let token = |role: &str| {
        let claims = json!({"sub": "carol", "aud": "gw", "iss": "idp", "role": role,
            "exp": http_support::now() + 600});
        http_support::jwt(claims, http_support::SECRET)
    };
    let admin = Client::with_token(&gw.mcp(), &token("admin"));
    let user = Client::with_token(&gw.mcp(), &token("user"));
    for round in 0..2 {
        let r = user.call(10 * round + 1, "read", json!({}), None).await;
        assert_eq!(r["isError"], true, "the user token's claims: {r}");
        let r = admin.call(10 * round + 2, "read", json!({}), None).await;
        assert_eq!(text(&r), "ran read", "the admin token's claims: {r}");
    }
    assert_eq!(upstream.ran().len(), 2, "only the admin's calls ran");
    gw.stop().await;
}

/// The gateway in front of a fresh upstream, its relays ending after a second idle (the
/// directory holds the policy).
async fn idle_gateway() -> (Upstream, tempfile::TempDir, http_support::Gateway) {
    let upstream = Upstream::start(TOOLS, false).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.json", POLICY);
    let args = ["--upstream", &upstream.url, "--trusted-header", "x-user"];
    let gw = gateway(&policy, &[&args[..], &["--session-idle-timeout", "1"]].concat(), &[]).await;
    (upstream, dir, gw)
}

/// Waits until every relay of `gw` has ended (idle for a second, with
/// `--session-idle-timeout 1`): the sessions gauge says 0.
async fn relays_gone(gw: &http_support::Gateway) {
    tokio::time::timeout(http_support::PATIENCE, async {
        while !gw.metrics().await.lines().any(|l| l == "mcp_policy_gateway_sessions 0") {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the relays never ended");
}

/// The upstream's own `input_required` round outlives the identity's relay too: after the relay
/// ended (idle timeout), the retry with the upstream's `requestState` still continues its call
/// without a second charge, once; another identity's use of it is a new call of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstreams_own_round_outlives_the_identitys_relay() {
    let (upstream, _dir, gw) = idle_gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let bob = Client::new(&gw.mcp(), "bob");
    // `ask` admits 2 per identity: both are spent on the calls, none on their retries.
    let r = alice.call(1, "ask", json!({"q": 1}), None).await;
    let s1 = r["requestState"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned();
    let r = alice.call(2, "ask", json!({"q": 2}), None).await;
    let s2 = r["requestState"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned();
    relays_gone(&gw).await;
    let r = alice.call(3, "ask", json!({"q": 1}), Some((&s1, sure()))).await;
    assert_eq!(text(&r), "ran ask", "the round outlived the relay: {r}");
    let r = bob.call(4, "ask", json!({"q": 2}), Some((&s2, sure()))).await;
    assert_eq!(text(&r), "ran ask", "bob's own new call: {r}");
    bob.call(5, "ask", json!({"b": 1}), None).await;
    let r = bob.call(6, "ask", json!({"b": 2}), None).await;
    assert_eq!(r["isError"], true, "bob's use of alice's state was charged to bob: {r}");
    relays_gone(&gw).await;
    let r = alice.call(7, "ask", json!({"q": 2}), Some((&s2, sure()))).await;
    assert_eq!(text(&r), "ran ask", "alice's other round, still hers: {r}");
    let n = upstream.ran().len();
    let r = alice.call(8, "ask", json!({"q": 1}), Some((&s1, sure()))).await;
    assert_eq!(r["isError"], true, "a spent round is a new call, and limited: {r}");
    assert_eq!(upstream.ran().len(), n);
    gw.stop().await;
}

/// The gateway's approval round outlives the identity's relay: the relay ends (idle timeout)
/// between the round and its approved retry, and the retry with the token passes all the same,
/// once; a second use is refused, and so is another identity's use (before and after), nothing
/// of those reaching the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_round_outlives_the_identitys_relay() {
    let (upstream, _dir, gw) = idle_gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let bob = Client::new(&gw.mcp(), "bob");
    let r = alice.call(1, "create", json!({"n": 1}), None).await;
    assert_eq!(r["resultType"], "input_required", "{r}");
    let token = r["requestState"].as_str().unwrap().to_owned();
    relays_gone(&gw).await;
    let r = bob.call(2, "create", json!({"n": 1}), Some((&token, approve()))).await;
    assert_eq!(r["isError"], true, "another identity's round: {r}");
    assert!(text(&r).contains("matches no pending approval"), "{r}");
    relays_gone(&gw).await;
    let r = alice.call(3, "create", json!({"n": 1}), Some((&token, approve()))).await;
    assert_eq!(text(&r), "ran create", "the round outlived the relay: {r}");
    let r = alice.call(4, "create", json!({"n": 1}), Some((&token, approve()))).await;
    assert_eq!(r["isError"], true, "a spent round: {r}");
    assert!(text(&r).contains("matches no pending approval"), "{r}");
    let r = bob.call(5, "create", json!({"n": 1}), Some((&token, approve()))).await;
    assert_eq!(r["isError"], true, "another identity, after: {r}");
    assert_eq!(upstream.ran_of("create").len(), 1, "created once: {:?}", upstream.ran());
    gw.stop().await;
}
