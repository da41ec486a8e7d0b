//! A hostile client of protocol revision 2026-07-28 against the gateway's sessionless path and
//! the continuation of the upstream's own `input_required` rounds (security review, issue 12).
//!
//! The upstream is rmcp's own streamable-HTTP server in this test process, recording every call
//! it runs, so that each attack is judged by what reached it: `ask` answers `input_required`
//! once, `forever` answers it to every call (new `requestState` each time), `slow` waits until
//! the test lets it go.
//!
//! Attacks that held: racing retries of one state, a state reused with arguments that differ
//! only in spelling (1 vs 1.0, a duplicated key, unicode escapes, member order), headers that
//! contradict the body (case, duplicates, encodings), notifications and responses without a
//! session, another client's session id, a JWT whose claims change, a flood of identities,
//! cancellations and dropped connections mid-flight. Holes found and closed here: an upstream
//! that asks for input forever let one charge buy unlimited calls (now at most
//! `MAX_CONTINUATION_ROUNDS` rounds per decided call); a trusted header sent twice named the
//! grant by the client's copy (now 401); an upstream answering the gateway's own `tools/list`
//! with an endless event stream held the call forever (now 10 s, 64 MiB at most); a flood of
//! progress toward a client that does not read was queued without bound (now 256 per POST); an
//! `x-mcp-header` that is no header name failed every call of its tool (now left out); a huge
//! JSON answer or event from the upstream was held whole in memory (now given up past 64 MiB);
//! calls arriving during the gateway's own listing went without their `Mcp-Param-*` headers
//! (now they wait for it). These
//! held too: a progress token or request id chosen to collide with the gateway's own
//! (`inline-progress-N`, `inline-N`: both are replaced), tokens that are objects or numbers (given
//! back as sent), a cancellation for another client's request (a sessionless client's
//! notifications reach nothing), a value with CR/LF in an `Mcp-Param-*` header (Base64).
//! Closed later: the client's own `Mcp-Param-*` headers went unchecked (now 400, -32020, when
//! they contradict the arguments of a tool whose schema the gateway knows); a log the upstream
//! sent for one request was dropped (now it reaches that request's POST, and no other).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod http_support;

use http_support::inline::{
    Bare, Client, EndlessLister, HugeAnswer, ProgressFlood, Upstream, call_body, meta, send,
    session_client, sure,
};
use http_support::{Gateway, gateway, text, write};
use mcp_policy_gateway::rounds::MAX_CONTINUATION_ROUNDS;
use serde_json::{Value, json};

const POLICY: &str = r#"{"version": "1", "default": "deny", "tools": {
    "read": {},
    "ask": {"limits": [{"counter": "ask", "window": "hour", "max": 2}]},
    "forever": {"limits": [{"counter": "forever", "window": "hour", "max": 2}]},
    "slow": {"limits": [{"counter": "slow", "window": "hour", "max": 2}]},
    "progress": {},
    "regional": {},
    "logs": {},
    "ghost": {}}}"#;

/// The upstream's tools (it lists `secret` too, which only the default denies).
const TOOLS: &[&str] =
    &["read", "ask", "forever", "slow", "progress", "regional", "logs", "secret"];

/// The recording upstream, and a directory with the policy.
struct Env {
    up: Upstream,
    dir: tempfile::TempDir,
}

async fn upstream() -> Env {
    let up = Upstream::start(TOOLS, false).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.json", POLICY);
    Env { up, dir }
}

impl Env {
    fn policy(&self) -> std::path::PathBuf {
        self.dir.path().join("policy.json")
    }

    /// The gateway in front of the upstream, the identity by the trusted header `x-user`.
    async fn gateway(&self) -> Gateway {
        gateway(&self.policy(), &["--upstream", &self.up.url, "--trusted-header", "x-user"], &[])
            .await
    }
}

fn limited(result: &Value) -> bool {
    result["isError"] == true && text(result).contains("Rate limited")
}

/// The first call of `ask` for `client`: charged, answered by the upstream's own round.
async fn ask(client: &Client, id: i64, args: &str) -> String {
    let r = client.call(id, "ask", args, None).await;
    assert_eq!(r["resultType"], "input_required", "{r}");
    r["requestState"].as_str().unwrap().to_owned()
}

/// Several retries carrying one state at once: one continues the call, the others are new
/// calls of an exhausted limit, refused; only one reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_retries_of_one_state_continue_the_call_once() {
    let env = upstream().await;
    let gw = env.gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let s1 = ask(&alice, 1, "{}").await;
    let _s2 = ask(&alice, 2, "{}").await; // `ask` (max 2) is now exhausted for alice
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (c, s) = (alice.clone(), s1.clone());
            tokio::spawn(async move { c.call(10 + i, "ask", "{}", Some((&s, sure()))).await })
        })
        .collect();
    let mut ran = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if text(&r) == "ran ask" {
            ran += 1;
        } else {
            assert!(limited(&r), "a racing replay is a new call, limited: {r}");
        }
    }
    assert_eq!(ran, 1, "one retry continues the call");
    let with_state: Vec<Value> =
        env.up.ran_of("ask").into_iter().filter(|c| c["state"] == s1.as_str()).collect();
    assert_eq!(with_state.len(), 1, "the upstream saw the state once: {with_state:?}");
    assert_eq!(env.up.ran_of("ask").len(), 3);
    gw.stop().await;
}

/// A state is bound to the arguments the upstream was called with, as the upstream sees them:
/// spellings that parse to other values (1.0 for 1, a duplicated key whose last value differs)
/// are new calls; spellings of the same value (member order, unicode escapes, a duplicated key
/// whose last value is the original) continue it, and the upstream gets the original values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_is_bound_to_the_arguments_the_upstream_sees() {
    let env = upstream().await;
    let gw = env.gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let original = r#"{"n": 1, "s": "a", "o": {"x": [1, 2], "y": null}}"#;
    let s1 = ask(&alice, 1, original).await;
    let _ = ask(&alice, 2, "{}").await; // exhausted
    let sent = env.up.ran_of("ask")[0]["args"].clone();
    assert_eq!(sent, json!({"n": 1, "s": "a", "o": {"x": [1, 2], "y": null}}));
    let others = [
        r#"{"n": 1.0, "s": "a", "o": {"x": [1, 2], "y": null}}"#,
        r#"{"n": 1, "s": "a", "o": {"x": [1, 2], "y": null}, "n": 2}"#,
        r#"{"n": 1, "s": "A", "o": {"x": [1, 2], "y": null}}"#,
        r#"{"n": 1, "s": "a", "o": {"x": [2, 1], "y": null}}"#,
        r#"{"n": 1, "s": "a", "o": {"x": [1, 2]}}"#,
        r#"{"n": 1, "s": "a", "o": {"x": [1, 2], "y": null}, "extra": true}"#,
        r#"{"n": "1", "s": "a", "o": {"x": [1, 2], "y": null}}"#,
    ];
    for (i, args) in others.iter().enumerate() {
        let r = alice.call(10 + i as i64, "ask", args, Some((&s1, sure()))).await;
        assert!(limited(&r), "`{args}` is another call: decided anew, limited: {r}");
    }
    assert_eq!(env.up.ran_of("ask").len(), 2, "none of those reached the upstream");
    // The same values spelled otherwise: the call continues, with the original values.
    let same = r#"{"o": {"y": null, "x": [1, 2]}, "s": "\u0061", "n": 2, "n": 1}"#;
    let r = alice.call(20, "ask", same, Some((&s1, sure()))).await;
    assert_eq!(text(&r), "ran ask", "{r}");
    let last = env.up.ran_of("ask").pop().unwrap();
    assert_eq!(last["args"], sent, "the upstream ran what was decided: {last}");
    assert_eq!(last["state"], s1.as_str());
    // Spent.
    let r = alice.call(21, "ask", original, Some((&s1, sure()))).await;
    assert!(limited(&r), "{r}");
    gw.stop().await;
}

/// An upstream that answers `input_required` forever: one decision carries the call through at
/// most `MAX_CONTINUATION_ROUNDS` of its rounds; the next retry is decided (and charged) as a
/// new call, so the limit bounds what reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_asks_forever_cannot_stretch_one_charge() {
    let env = upstream().await;
    let gw = env.gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let mut state: Option<String> = None;
    let mut refused = None;
    let cap = 10 * (MAX_CONTINUATION_ROUNDS as i64 + 1);
    for id in 1..=cap {
        let r =
            alice.call(id, "forever", r#"{"k": 1}"#, state.as_deref().map(|s| (s, sure()))).await;
        if r["isError"] == true {
            refused = Some(r);
            break;
        }
        assert_eq!(r["resultType"], "input_required", "{r}");
        state = Some(r["requestState"].as_str().unwrap().to_owned());
    }
    let refused = refused.expect("the upstream's rounds went on without a new charge");
    assert!(limited(&refused), "{refused}");
    // `forever` admits 2: two decided calls, each continued through the bound, then refused.
    let per_charge = 1 + MAX_CONTINUATION_ROUNDS as usize;
    assert_eq!(env.up.ran_of("forever").len(), 2 * per_charge, "what reached the upstream");
    gw.stop().await;
}

/// Headers that say another thing than the body, however spelled, are refused before anything
/// is decided or relayed; notifications and responses without a session reach nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_under_other_headers_reaches_nothing() {
    let env = upstream().await;
    let gw = env.gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let body = call_body(1, "read", "{}", None);
    let b64 = |s: &str| {
        use base64::Engine;
        format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(s))
    };
    let secret_b64 = b64("secret");
    type Case<'a> = (&'a str, Option<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("tools/list", Some("read"), vec![], "a harmless Mcp-Method"),
        ("Tools/Call", Some("read"), vec![], "Mcp-Method in another case"),
        ("tools/call", Some("READ"), vec![], "Mcp-Name in another case"),
        ("tools/call", Some(&secret_b64), vec![], "Mcp-Name encoded, naming another tool"),
        ("tools/call", Some("read"), vec![("mcp-name", "secret")], "two Mcp-Name"),
        ("tools/call", Some("read"), vec![("Mcp-Method", "tools/list")], "two Mcp-Method"),
        (
            "tools/call",
            Some("read"),
            vec![("MCP-Protocol-Version", "2025-06-18")],
            "two MCP-Protocol-Version",
        ),
    ];
    for (method, name, extra, what) in &cases {
        let (status, msg) = send(alice.raw(body.clone(), method, *name, extra)).await;
        assert_eq!(status, 400, "{what}: {msg}");
        assert_eq!(msg["error"]["code"], -32020, "{what}: {msg}");
    }
    // A body naming `secret` under headers naming `read`.
    let secret = call_body(2, "secret", "{}", None);
    let (status, _) = send(alice.raw(secret, "tools/call", Some("read"), &[])).await;
    assert_eq!(status, 400);
    // A body naming `read`, then `secret` (a repeated key: the last counts, for the gateway as
    // for what it relays), under headers naming `read`.
    let twice = call_body(3, "read", "{}", None).replacen(
        r#""name": "read","#,
        r#""name": "read", "name": "secret","#,
        1,
    );
    assert!(twice.contains(r#""name": "secret""#), "{twice}");
    let (status, msg) = send(alice.raw(twice, "tools/call", Some("read"), &[])).await;
    assert_eq!(status, 400, "{msg}");
    // Oversized headers: refused by the HTTP layer or as a mismatch, never relayed.
    let huge = "r".repeat(512 * 1024);
    let (status, _) = send(alice.raw(body.clone(), "tools/call", Some(&huge), &[])).await;
    assert!(status == 400 || status == 431, "{status}");
    let (status, _) =
        send(alice.raw(body.clone(), "tools/call", Some("read"), &[("x-pad", &huge)])).await;
    assert!(status == 400 || status == 431, "{status}");
    // The Mcp-Name of `read` encoded: the same name, accepted.
    let read_b64 = b64("read");
    let (status, msg) = send(alice.raw(body.clone(), "tools/call", Some(&read_b64), &[])).await;
    assert_eq!((status, text(&msg["result"])), (200, "ran read".to_owned()), "{msg}");
    // A tools/call without an id (a notification): nothing to decide, nothing relayed.
    let note = format!(
        r#"{{"jsonrpc": "2.0", "method": "tools/call", "params": {{"name": "read",
            "arguments": {{}}, "_meta": {}}}}}"#,
        meta()
    );
    let (status, _) = send(alice.raw(note, "tools/call", Some("read"), &[])).await;
    assert_eq!(status, 202);
    // A response (to nothing: servers of 2026-07-28 send no requests): 400.
    let resp = r#"{"jsonrpc": "2.0", "id": "inline-1", "result": {"action": "accept"}}"#;
    let (status, _) = send(alice.raw(resp.into(), "tools/call", None, &[])).await;
    assert_eq!(status, 400);
    // A batch of one: 400.
    let (status, _) = send(alice.raw(format!("[{body}]"), "tools/call", Some("read"), &[])).await;
    assert_eq!(status, 400);
    assert_eq!(env.up.ran().len(), 1, "only the honest call ran: {:?}", env.up.ran());
    gw.stop().await;
}

/// The trusted header given twice (a client's own, then the proxy's appended): neither names
/// the grant (401). Another client's session id on a sessionless request reaches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowed_identities_and_sessions_are_refused() {
    let env = upstream().await;
    let gw = env.gateway().await;
    let mallory = Client::new(&gw.mcp(), "admin");
    let body = call_body(1, "read", "{}", None);
    let req = mallory.raw(body.clone(), "tools/call", Some("read"), &[("x-user", "mallory")]);
    let (status, msg) = send(req).await;
    assert_eq!(status, 401, "{msg}");
    assert!(msg["error"]["message"].as_str().unwrap().contains("more than one `x-user`"), "{msg}");

    // Alice's session (an older revision, with `initialize`).
    let mut old = session_client(&gw, "alice");
    old.initialize().await.unwrap();
    let alice_session = old.session.clone().unwrap();
    let bob = Client::new(&gw.mcp(), "bob");
    // Bob, sessionless, with alice's session id: not his session (and not a 2026-07-28
    // request any more): refused, nothing relayed.
    let req =
        bob.raw(body.clone(), "tools/call", Some("read"), &[("mcp-session-id", &alice_session)]);
    let (status, msg) = send(req).await;
    assert!(status == 400 || status == 404, "{status} {msg}");
    let plain = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "read", "arguments": {}}});
    let req = bob
        .http
        .post(&bob.url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("x-user", "bob")
        .header("mcp-session-id", &alice_session)
        .header("mcp-protocol-version", "2025-06-18")
        .body(plain.to_string());
    let (status, _) = send(req).await;
    assert_eq!(status, 404, "another identity's session is unknown");
    assert!(env.up.ran().is_empty(), "nothing ran: {:?}", env.up.ran());
    gw.stop().await;
}

/// The gateway in front of `env`'s upstream, with HS256 JWTs (audience `gw`, issuer `idp`) and
/// at most `max_sessions` sessions.
async fn jwt_gateway(env: &Env, max_sessions: &str) -> Gateway {
    let secret = write(env.dir.path(), "secret", http_support::SECRET);
    let args = [
        "--upstream",
        &env.up.url,
        "--jwt-secret-file",
        secret.to_str().unwrap(),
        "--audience",
        "gw",
        "--issuer",
        "idp",
        "--max-sessions",
        max_sessions,
    ];
    gateway(&env.policy(), &args, &[]).await
}

/// A JWT whose claims change between requests (same subject): the upstream's round given to
/// one token is not continued under another (a new call, charged); each token's relay counts
/// against `--max-sessions`, as does each identity: a flood of identities gets 503 past it and
/// starts no upstream connection of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_claims_and_floods_of_identities() {
    let env = upstream().await;
    let gw = jwt_gateway(&env, "3").await;
    let token = |team: &str| {
        http_support::jwt(
            json!({"sub": "carol", "aud": "gw", "iss": "idp", "team": team,
                "exp": http_support::now() + 600}),
            http_support::SECRET,
        )
    };
    let client = |t: String| Client::with_token(&gw.mcp(), &t);
    let (a, b) = (client(token("a")), client(token("b")));
    let s1 = ask(&a, 1, "{}").await;
    // Token b (carol's too, other claims) with a's state: a new call of carol's, charged.
    let r = b.call(2, "ask", "{}", Some((&s1, sure()))).await;
    assert_eq!(text(&r), "ran ask", "decided, charged and sent as a new call: {r}");
    // Carol's `ask` (max 2) is spent by those two (were b's call not charged, a's new call
    // below would pass): a's own retry still continues its call.
    let r = a.call(3, "ask", "{}", Some((&s1, sure()))).await;
    assert_eq!(text(&r), "ran ask", "{r}");
    let r = a.call(4, "ask", "{}", None).await;
    assert!(limited(&r), "{r}");
    // Two relays (tokens a and b) of 3; a third identity fits, the fourth does not.
    let c = client(token("c"));
    let (status, _) =
        send(c.raw(call_body(5, "read", "{}", None), "tools/call", Some("read"), &[])).await;
    assert_eq!(status, 200);
    let before = env.up.ran().len();
    for i in 0..5 {
        let flood = client(http_support::token_for(&format!("flood-{i}")));
        let req = flood.raw(call_body(6, "read", "{}", None), "tools/call", Some("read"), &[]);
        let (status, msg) = send(req).await;
        assert_eq!(status, 503, "{msg}");
        assert!(msg["error"]["message"].as_str().unwrap().contains("--max-sessions"), "{msg}");
    }
    assert_eq!(env.up.ran().len(), before, "the flood reached nothing");
    let (sessions, metrics) = sessions_gauge(&gw).await;
    assert_eq!(sessions, 3.0, "{metrics}");
    gw.stop().await;
}

/// The gateway's `mcp_policy_gateway_sessions` gauge, and the whole metrics text.
async fn sessions_gauge(gw: &Gateway) -> (f64, String) {
    let metrics = gw.metrics().await;
    let sessions = metrics
        .lines()
        .find(|l| l.starts_with("mcp_policy_gateway_sessions "))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no sessions gauge: {metrics}"))
        .parse()
        .unwrap();
    (sessions, metrics)
}

/// A client that mints a token per request (same subject, new claims each time) churns its own
/// relays, at most `MAX_RELAYS_PER_PRINCIPAL` at once, and never fills `--max-sessions` for the
/// others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_per_request_cannot_fill_the_gateway() {
    let env = upstream().await;
    let gw = jwt_gateway(&env, "6").await;
    let client = |sub: &str, jti: usize| {
        let t = http_support::jwt(
            json!({"sub": sub, "aud": "gw", "iss": "idp", "jti": format!("t{jti}"),
                "exp": http_support::now() + 600}),
            http_support::SECRET,
        );
        Client::with_token(&gw.mcp(), &t)
    };
    let read = |c: Client, id: i64| async move {
        send(c.raw(call_body(id, "read", "{}", None), "tools/call", Some("read"), &[])).await
    };
    for i in 0..12 {
        let (status, msg) = read(client("mallory", i), 100 + i as i64).await;
        assert_eq!(status, 200, "token {i}: {msg}");
    }
    let (sessions, metrics) = sessions_gauge(&gw).await;
    assert_eq!(
        sessions,
        mcp_policy_gateway::downstream::http::MAX_RELAYS_PER_PRINCIPAL as f64,
        "{metrics}"
    );
    // Another user still gets in.
    let (status, msg) = read(client("dave", 0), 200).await;
    assert_eq!(status, 200, "{msg}");
    gw.stop().await;
}

/// Cancellations without a session relay nothing (they could name another client's call of
/// the same identity), and a client that drops its connection mid-call neither frees its charge
/// nor wedges the identity's relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_and_dropped_connections_mid_call() {
    let env = upstream().await;
    let gw = env.gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let first = {
        let c = alice.clone();
        tokio::spawn(async move { c.call(1, "slow", "{}", None).await })
    };
    env.up.wait_for("slow", 1).await;
    // Cancel every id the gateway may have given it, and the client's own.
    for id in [json!(1), json!("inline-0"), json!("inline-1"), json!("inline-2"), json!(0)] {
        let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": id, "_meta": meta()}});
        let req = alice.raw(note.to_string(), "notifications/cancelled", None, &[]);
        let (status, _) = send(req).await;
        assert_eq!(status, 202);
    }
    // A second call, its connection dropped while the upstream works on it.
    let second = {
        let c = alice.clone();
        tokio::spawn(async move { c.call(2, "slow", "{}", None).await })
    };
    env.up.wait_for("slow", 2).await;
    second.abort();
    let _ = second.await;
    env.up.gate.add_permits(2);
    let r = first.await.unwrap();
    assert_eq!(text(&r), "ran slow", "not cancelled by another's notification: {r}");
    // Both calls were charged (`slow` admits 2): the dropped one did not give its units back.
    let r = alice.call(3, "slow", "{}", None).await;
    assert!(limited(&r), "{r}");
    // And the relay still serves alice.
    assert_eq!(text(&alice.call(4, "read", "{}", None).await), "ran read");
    assert_eq!(env.up.ran_of("slow").len(), 2);
    gw.stop().await;
}

/// Over stdio, a client that never reads its standard output while the upstream floods it with
/// notifications: the gateway holds a bounded number of messages (its channels), stops reading
/// the upstream, and the upstream blocks on its full pipe; the gateway's memory stays bounded.
/// (Were the gateway to buffer without bound, the upstream would write all of its 200 MB.)
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_make_the_gateway_buffer_without_bound() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.json", POLICY);
    let progress = dir.path().join("progress");
    let done = dir.path().join("done");
    // 20 000 notifications of 10 kB; the count written every 100.
    let script = format!(
        r#"BEGIN {{ s = "xxxxxxxxxx"; for (j = 0; j < 10; j++) s = s s;
            for (i = 1; i <= 20000; i++) {{
                print "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"level\":\"info\",\"data\":\"" s "\"}}}}"; fflush();
                if (i % 100 == 0) {{ print i > "{p}"; close("{p}") }}
            }}
            print "done" > "{d}"; close("{d}") }}"#,
        p = progress.display(),
        d = done.display()
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-policy-gateway"))
        .arg("--policy")
        .arg(&policy)
        .args(["--", "awk", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let written =
        || std::fs::read_to_string(&progress).ok().and_then(|s| s.trim().parse::<u64>().ok());
    // Wait until the upstream stops making progress (it blocks on its pipe), or finishes, or
    // the gateway exits (a test that cannot run is a failure, not a pass).
    let mut last = None;
    let mut still = 0;
    tokio::time::timeout(http_support::PATIENCE, async {
        while !done.exists() && still < 20 {
            assert!(child.try_wait().unwrap().is_none(), "the gateway exited");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let now = written();
            if now.is_some() && now == last {
                still += 1;
            } else {
                still = 0;
            }
            last = now;
        }
    })
    .await
    .expect("the upstream neither finished nor stalled");
    assert!(!done.exists(), "the upstream wrote all of its 200 MB to a client that reads nothing");
    let rss_kb = http_support::proc_status_kib(pid, "VmRSS");
    let upstream_kb = last.unwrap_or(0) * 10;
    eprintln!("the upstream stalled after {upstream_kb} kB; the gateway holds {rss_kb} kB");
    assert!(rss_kb < 64 * 1024, "the gateway holds {rss_kb} kB after {upstream_kb} kB");
    drop(child.stdin.take());
    let _ = child.kill().await;
}

/// A client without a session cancels by closing its connection: the gateway then aborts the
/// request to the upstream (closes its connection before the answer) and the decision log says `cancelled`;
/// the charge stands, and the identity's relay serves the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_cancels_the_call_upstream() {
    let env = upstream().await;
    let log = env.dir.path().join("decisions.jsonl");
    let log_arg = log.to_str().unwrap();
    let args = ["--upstream", &env.up.url, "--trusted-header", "x-user", "--decision-log", log_arg];
    let gw = gateway(&env.policy(), &args, &[]).await;
    let alice = Client::new(&gw.mcp(), "alice");
    let call = {
        let c = alice.clone();
        tokio::spawn(async move { c.call(1, "slow", "{}", None).await })
    };
    env.up.wait_for("slow", 1).await;
    call.abort();
    let _ = call.await;
    let logged = tokio::time::timeout(http_support::PATIENCE, async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<Value> =
                text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            if let Some(l) = lines.into_iter().find(|l| l["tool"] == "slow") {
                return l;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the call was never logged");
    assert_eq!(logged["outcome"], "cancelled", "{logged}");
    // The gateway closed its request to the upstream before the answer.
    env.up.wait_for("slow:closed", 1).await;
    // Charged once (`slow` admits 2): the cancelled call did not give its units back. (rmcp
    // goes on running the first handler, which takes a permit too.)
    env.up.gate.add_permits(2);
    assert_eq!(text(&alice.call(2, "slow", "{}", None).await), "ran slow");
    assert!(limited(&alice.call(3, "slow", "{}", None).await));
    gw.stop().await;
}

/// Progress without a session: the request travels with a progress token of the gateway's own
/// (several clients of one identity share the relay; theirs could collide), and the upstream's
/// progress reaches the client on its POST's stream, before the answer, with the client's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_the_client_with_its_own_token() {
    let env = upstream().await;
    let gw = env.gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let mut with_token = meta();
    with_token["progressToken"] = json!("mine");
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "progress", "arguments": {}, "_meta": with_token}});
    let resp =
        alice.raw(body.to_string(), "tools/call", Some("progress"), &[]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let messages = http_support::messages(resp).await;
    assert_eq!(messages.len(), 2, "progress, then the answer: {messages:?}");
    assert_eq!(messages[0]["method"], "notifications/progress", "{messages:?}");
    assert_eq!(messages[0]["params"]["progressToken"], "mine", "{messages:?}");
    assert_eq!(messages[0]["params"]["message"], "half way");
    assert_eq!(messages[1]["id"], 7, "{messages:?}");
    assert_eq!(text(&messages[1]["result"]), "ran progress");
    // The upstream saw a token of the gateway's, not the client's.
    let seen = env.up.ran_of("progress");
    assert_eq!(seen.len(), 1);
    assert!(seen[0]["token"].is_string() && seen[0]["token"] != "mine", "{seen:?}");
    gw.stop().await;
}

/// SEP-2243's `Mcp-Param-*` headers toward an HTTP upstream without a session: a tool whose
/// schema declares `x-mcp-header` gets each declared argument mirrored in its header (Base64 when
/// it is not plain ASCII), which rmcp's server requires, whether or not the client listed the
/// tools first (the gateway lists them itself); an absent argument has no header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_carry_the_param_headers_their_schema_declares() {
    let env = upstream().await;
    let gw = env.gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    // No `tools/list` first: the gateway learns the schema itself.
    let r = alice.call(1, "regional", json!({"region": "eu-west"}), None).await;
    assert_eq!(text(&r), "ran regional", "{r}");
    let r = alice.call(2, "regional", json!({"region": "Zürich"}), None).await;
    assert_eq!(text(&r), "ran regional", "{r}");
    let r = alice.call(3, "regional", json!({}), None).await;
    assert_eq!(text(&r), "ran regional", "{r}");
    let regions: Vec<Value> =
        env.up.ran_of("regional").into_iter().map(|c| c["args"]["region"].clone()).collect();
    assert_eq!(regions, [json!("eu-west"), json!("Zürich"), Value::Null]);
    let lists = || env.up.lists.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(lists(), 1, "the gateway listed the tools once");
    // A name the policy allows and the upstream does not list (`ghost`): calls of it cost no
    // listing each (at most one per 10 s), however many come.
    for id in 10..30 {
        alice.call(id, "ghost", json!({}), None).await;
    }
    assert_eq!(env.up.ran_of("ghost").len(), 20);
    assert_eq!(lists(), 1, "a flood of unlisted names makes no listing");
    gw.stop().await;
}

/// A hostile upstream answers the gateway's own `tools/list` (made to learn a tool's
/// `Mcp-Param-*` headers before a sessionless call) with an event stream that never ends: the
/// call is not held up forever (the listing is given up on and its connection closed), and
/// reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_tools_list_does_not_hold_up_the_call() {
    let up = EndlessLister::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.json", POLICY);
    let policy = dir.path().join("policy.json");
    let gw = gateway(&policy, &["--upstream", &up.url, "--trusted-header", "x-user"], &[]).await;
    let alice = Client::new(&gw.mcp(), "alice");
    let r = tokio::time::timeout(http_support::PATIENCE, alice.call(1, "read", json!({}), None))
        .await
        .expect("the call hung on the upstream's endless tools/list");
    assert_eq!(text(&r), "ran read", "{r}");
    assert_eq!(up.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The listing's connection was closed by the gateway, not left open.
    tokio::time::timeout(http_support::PATIENCE, async {
        while up.listings_closed.load(std::sync::atomic::Ordering::SeqCst) < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the gateway never closed the endless listing");
    gw.stop().await;
}

/// A gateway in front of a hostile upstream that floods any call with 10 000 progress
/// notifications of 10 kB (see [`ProgressFlood`]).
async fn flooding() -> (ProgressFlood, Gateway, tempfile::TempDir) {
    let up = ProgressFlood::start(10_000).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.json", POLICY);
    let policy = dir.path().join("policy.json");
    let gw = gateway(&policy, &["--upstream", &up.url, "--trusted-header", "x-user"], &[]).await;
    (up, gw, dir)
}

/// Once the upstream has sent its whole flood toward `resp`, whose body is never read (the
/// gateway reads the upstream's), the gateway holds less than 64 MB.
async fn the_flood_is_bounded(up: &ProgressFlood, gw: Gateway, resp: reqwest::Response) {
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    tokio::time::timeout(http_support::PATIENCE, async {
        while !up.done.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the upstream could not send its flood");
    // Let the gateway take in what it read.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let pid = gw.child.id().unwrap();
    let rss_kb = http_support::proc_status_kib(pid, "VmRSS");
    eprintln!("the gateway holds {rss_kb} kB after a 100 MB flood");
    assert!(rss_kb < 64 * 1024, "the gateway holds {rss_kb} kB");
    drop(resp);
    gw.stop().await;
}

/// A hostile upstream floods a sessionless call with progress (10 000 notifications of 10 kB)
/// while its client reads nothing past the answer's headers: the gateway keeps at most
/// `INLINE_PROGRESS_MAX` of them for the client and drops the rest, so its memory stays bounded.
/// (Were it to queue them all, it would hold 100 MB.)
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_progress_toward_a_client_that_never_reads_is_bounded() {
    let (up, gw, _dir) = flooding().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let mut with_token = meta();
    with_token["progressToken"] = json!("mine");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "read", "arguments": {}, "_meta": with_token}});
    let resp = alice.raw(body.to_string(), "tools/call", Some("read"), &[]).send().await.unwrap();
    the_flood_is_bounded(&up, gw, resp).await;
}

/// The same flood toward a client with a session (revision 2025-06-18) that stops reading its
/// POST's event stream: the stream takes at most `STREAM_BEHIND_MAX` server-initiated messages
/// its client has not read, the rest wait in the session's bounded backlog (or are dropped), so
/// the gateway's memory stays bounded. (Were it to queue them all, it would hold 100 MB.)
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_toward_a_session_client_that_stops_reading_is_bounded() {
    let (up, gw, _dir) = flooding().await;
    let mut alice = session_client(&gw, "alice");
    alice.initialize().await.unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "read", "arguments": {}, "_meta": {"progressToken": "mine"}}});
    let resp = alice.post(&body).send().await.unwrap();
    the_flood_is_bounded(&up, gw, resp).await;
}

/// An upstream whose schema declares an `x-mcp-header` that is no header name (a space in it)
/// next to a good one: the call still reaches it, with the good header and without the bad one
/// (the bad name used to fail the whole request: "cannot reach the upstream"). A value with a
/// line break cannot inject a header: it travels in Base64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_declaring_a_bad_header_name_does_not_break_the_call() {
    let up = Bare::start(json!([{"name": "read", "inputSchema": {"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "bad": {"type": "string", "x-mcp-header": "Bad Name"}}}}]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.json", POLICY);
    let policy = dir.path().join("policy.json");
    let gw = gateway(&policy, &["--upstream", &up.url, "--trusted-header", "x-user"], &[]).await;
    let mut alice = Client::new(&gw.mcp(), "alice");
    // The client mirrors the good declaration (the bad name cannot travel as a header).
    alice.params.push(("read", "region", "Region"));
    let args = json!({"region": "eu\r\nX-Injected: 1", "bad": "x"});
    let r = alice.call(1, "read", args, None).await;
    assert_eq!(text(&r), "ran read", "{r}");
    let seen = up.params.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].len(), 1, "only the good header: {seen:?}");
    assert_eq!(seen[0][0].0, "mcp-param-region");
    assert!(seen[0][0].1.starts_with("=?base64?"), "{seen:?}");
    gw.stop().await;
}

/// Progress tokens that are not strings (a number, an object, one spelled like the gateway's
/// own) come back to their client exactly as it sent them; the upstream sees the gateway's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_tokens_of_any_shape_come_back_as_sent() {
    let env = upstream().await;
    let gw = env.gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let tokens = [json!(42), json!({"k": [1, "inline-progress-1"]}), json!("inline-progress-1")];
    for (id, token) in tokens.iter().enumerate() {
        let mut with_token = meta();
        with_token["progressToken"] = token.clone();
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "progress", "arguments": {}, "_meta": with_token}});
        let resp =
            alice.raw(body.to_string(), "tools/call", Some("progress"), &[]).send().await.unwrap();
        let messages = http_support::messages(resp).await;
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(&messages[0]["params"]["progressToken"], token, "{messages:?}");
        assert_eq!(messages[1]["id"], id, "{messages:?}");
    }
    let seen: Vec<Value> =
        env.up.ran_of("progress").into_iter().map(|c| c["token"].clone()).collect();
    assert_eq!(seen.len(), 3);
    // Each call travelled with a token of the gateway's own, one per call.
    assert!(seen.iter().all(|t| t.as_str().unwrap().starts_with("inline-progress-")), "{seen:?}");
    assert!(seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2], "{seen:?}");
    gw.stop().await;
}

/// A hostile upstream answers a call with a JSON body of 200 MB, or with an event stream whose
/// one event is 200 MB long: the gateway reads it as it comes and gives up past its 64 MiB bound
/// (the call gets an error), rather than taking all of it into memory first (the JSON body was
/// read whole, then measured; the event's line was buffered without bound). Its peak memory
/// says which.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_given_up_on_as_it_comes() {
    for sse in [false, true] {
        let up = HugeAnswer::start(200, sse).await;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "policy.json", POLICY);
        let policy = dir.path().join("policy.json");
        let args = ["--upstream", &up.url, "--trusted-header", "x-user"];
        let gw = gateway(&policy, &args, &[]).await;
        let alice = Client::new(&gw.mcp(), "alice");
        let resp = alice.raw(call_body(1, "read", "{}", None), "tools/call", Some("read"), &[]);
        let resp = tokio::time::timeout(http_support::PATIENCE, resp.send())
            .await
            .expect("the call was never answered")
            .unwrap();
        assert_eq!(resp.status(), 200);
        let messages = http_support::messages(resp).await;
        let pid = gw.child.id().unwrap();
        let peak_kb = http_support::proc_status_kib(pid, "VmHWM");
        eprintln!("sse {sse}: the gateway's memory peaked at {peak_kb} kB");
        assert!(peak_kb < 150 * 1024, "sse {sse}: the gateway peaked at {peak_kb} kB");
        assert!(messages[0]["error"].is_object(), "sse {sse}: {messages:?}");
        gw.stop().await;
    }
}

/// Several first calls at once of a tool whose schema declares `Mcp-Param-*` headers: each waits
/// for the gateway's one listing and carries the headers (rmcp's server refuses a call without
/// them; the calls that came during the listing used to go without).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_calls_at_once_all_carry_the_param_headers() {
    let env = upstream().await;
    let gw = env.gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let calls = (1..=8).map(|id| alice.call(id, "regional", json!({"region": "eu"}), None));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(text(&r), "ran regional", "{r}");
    }
    assert_eq!(env.up.ran_of("regional").len(), 8);
    assert_eq!(env.up.lists.load(std::sync::atomic::Ordering::SeqCst), 1, "one listing");
    gw.stop().await;
}

/// SEP-2243 asks a server to refuse a `tools/call` whose `Mcp-Param-*` headers do not say what
/// its arguments say; a proxy in front of the gateway may route or filter on them. The gateway
/// checks them against the tool's schema (listing the upstream's tools first when it never saw
/// them): a header with another value (plain or Base64), a missing one, one given twice, one for
/// an absent argument is 400 with -32020, and nothing reaches the upstream (nor is the call
/// decided); headers that match (plain or Base64, the header name in any case) pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn param_headers_that_contradict_the_body_reach_nothing() {
    let env = upstream().await;
    let gw = env.gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let eu = r#"{"region": "eu"}"#;
    /// (what, the arguments, the headers)
    type Case = (&'static str, &'static str, Vec<(&'static str, &'static str)>);
    let refused: [Case; 6] = [
        ("another value", eu, vec![("mcp-param-region", "us")]),
        ("Base64 of another value", eu, vec![("mcp-param-region", "=?base64?dXM=?=")]),
        ("no header", eu, vec![]),
        ("broken Base64", eu, vec![("mcp-param-region", "=?base64?%%%?=")]),
        ("twice", eu, vec![("mcp-param-region", "eu"), ("mcp-param-region", "eu")]),
        ("for an absent argument", "{}", vec![("mcp-param-region", "eu")]),
    ];
    for (id, (what, args, headers)) in refused.iter().enumerate() {
        let id = id as i64 + 1;
        let body = call_body(id, "regional", args, None);
        let (status, m) = send(alice.raw(body, "tools/call", Some("regional"), headers)).await;
        assert_eq!(status, 400, "{what}: {m}");
        assert_eq!(m["error"]["code"], -32020, "{what}: {m}");
        assert_eq!(m["id"], id, "{what}: {m}");
        assert!(
            m["error"]["message"].as_str().unwrap().contains("Mcp-Param-Region"),
            "{what}: {m}"
        );
    }
    assert!(env.up.ran_of("regional").is_empty(), "{:?}", env.up.ran());
    // The gateway listed the tools itself to learn the schema (the client never did).
    assert_eq!(env.up.lists.load(std::sync::atomic::Ordering::SeqCst), 1);
    let passed: [Case; 4] = [
        ("plain", eu, vec![("mcp-param-region", "eu")]),
        ("Base64 of a plain value", eu, vec![("mcp-param-region", "=?base64?ZXU=?=")]),
        (
            "Base64",
            r#"{"region": "Zürich"}"#,
            vec![("MCP-PARAM-REGION", "=?base64?WsO8cmljaA==?=")],
        ),
        ("absent, no header", "{}", vec![]),
    ];
    for (id, (what, args, headers)) in passed.iter().enumerate() {
        let id = id as i64 + 10;
        let body = call_body(id, "regional", args, None);
        let (status, m) = send(alice.raw(body, "tools/call", Some("regional"), headers)).await;
        assert_eq!(status, 200, "{what}: {m}");
        assert_eq!(text(&m["result"]), "ran regional", "{what}: {m}");
    }
    let regions: Vec<Value> =
        env.up.ran_of("regional").into_iter().map(|c| c["args"]["region"].clone()).collect();
    assert_eq!(regions, [json!("eu"), json!("eu"), json!("Zürich"), Value::Null]);
    // A tool whose schema declares no header: whatever `Mcp-Param-*` the client adds is not
    // looked at (as rmcp's server does).
    let body = call_body(20, "read", "{}", None);
    let (status, m) =
        send(alice.raw(body, "tools/call", Some("read"), &[("mcp-param-region", "x")])).await;
    assert_eq!(status, 200, "{m}");
    gw.stop().await;
}

/// A message the upstream sends on the stream of one sessionless request (a log, here) belongs
/// to that request: it reaches that request's POST, before the answer (which then comes as an
/// event stream), and no other client of the identity's relay sees it (another client of the
/// same identity, with a call in flight at the time, gets its answer alone). A client that takes
/// only JSON gets the answer alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_for_one_request_reaches_that_request_alone() {
    let env = upstream().await;
    let gw = env.gateway().await;
    let alice = Client::new(&gw.mcp(), "alice");
    let other = Client::new(&gw.mcp(), "alice");
    // The other client of the same identity waits on `slow` meanwhile.
    let waiting = {
        let other = other.clone();
        tokio::spawn(async move {
            let body = call_body(1, "slow", "{}", None);
            let resp = other.raw(body, "tools/call", Some("slow"), &[]).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            http_support::messages(resp).await
        })
    };
    env.up.wait_for("slow", 1).await;
    let body = call_body(2, "logs", "{}", None);
    let resp = alice.raw(body, "tools/call", Some("logs"), &[]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let messages = http_support::messages(resp).await;
    assert_eq!(messages.len(), 2, "the log, then the answer: {messages:?}");
    assert_eq!(messages[0]["method"], "notifications/message", "{messages:?}");
    assert_eq!(messages[0]["params"]["data"], "working on it", "{messages:?}");
    assert_eq!(messages[0].as_object().unwrap().len(), 3, "nothing of the gateway's: {messages:?}");
    assert_eq!(messages[1]["id"], 2, "{messages:?}");
    assert_eq!(text(&messages[1]["result"]), "ran logs");
    env.up.gate.add_permits(1);
    let theirs = tokio::time::timeout(http_support::PATIENCE, waiting).await.unwrap().unwrap();
    assert_eq!(theirs.len(), 1, "the other client sees its answer alone: {theirs:?}");
    assert_eq!(theirs[0]["id"], 1, "{theirs:?}");
    assert_eq!(text(&theirs[0]["result"]), "ran slow");
    // A client of JSON only: the answer alone.
    let body = call_body(3, "logs", "{}", None);
    let resp = alice.post_raw(
        body,
        "tools/call",
        Some("logs"),
        &["accept"],
        &[("accept", "application/json")],
    );
    let (status, m) = send(resp).await;
    assert_eq!(status, 200);
    assert_eq!(m["id"], 3, "{m}");
    assert_eq!(env.up.ran_of("logs").len(), 2);
    gw.stop().await;
}

/// A command upstream of 2026-07-28 (a small Python script on stdin/stdout): it offers that
/// revision in `server/discover` (which the gateway asks it first), lists `regional`
/// (its `region` declared as `Mcp-Param-Region`) and `read`, and answers every call after a log
/// message that claims to concern the call (it carries the gateway's own mark); it appends each
/// call it runs (`NAME ARGS`) to the file its first argument names.
const STDIO_UPSTREAM: &str = r#"
import json, sys
record = sys.argv[1]
schema = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg or "method" not in msg:
        continue
    if msg["method"] == "server/discover":
        result = {"supportedVersions": ["2025-11-25", "2026-07-28"],
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "t", "version": "1"}}
    elif msg["method"] == "tools/list":
        result = {"tools": [{"name": "regional", "inputSchema": schema},
                            {"name": "read", "inputSchema": {"type": "object"}}]}
    elif msg["method"] == "tools/call":
        with open(record, "a") as f:
            f.write(msg["params"]["name"] + " " + json.dumps(msg["params"].get("arguments")) + "\n")
        log = {"jsonrpc": "2.0", "method": "notifications/message",
               "params": {"level": "info", "data": "working on it"},
               "mcp-policy-gateway/relatedRequest": msg["id"]}
        print(json.dumps(log), flush=True)
        result = {"content": [{"type": "text", "text": "ran " + msg["params"]["name"]}]}
    else:
        result = {}
    print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)
"#;

/// With a command upstream, the relay learns a tool's `Mcp-Param-*` declarations from the
/// listings it relays: before any, the tool's headers are not checked (as rmcp's server does
/// not check a tool it does not know); after one, a call whose headers contradict its
/// arguments is 400 with -32020 and reaches nothing. Nothing says which request a message of
/// the child concerns (a mark it puts on one itself counts for nothing): a log is dropped, the
/// client gets the answer alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_upstream_checks_the_headers_of_tools_it_listed_and_keeps_its_logs() {
    let python = http_support::deps_dir().join("venv/bin/python");
    if !python.exists() {
        http_support::skip("MCP_POLICY_REQUIRE_PYTHON", "the test venv's python");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.json", POLICY);
    let script = write(dir.path(), "upstream.py", STDIO_UPSTREAM);
    let record = dir.path().join("ran.txt");
    let upstream = [python.into_os_string(), script.into_os_string(), record.clone().into()];
    let gw = gateway(&policy, &["--trusted-header", "x-user"], &upstream).await;
    let alice = Client::new(&gw.mcp(), "alice");
    let ran = || std::fs::read_to_string(&record).unwrap_or_default();
    let call = |id: i64, headers: &[(&str, &str)]| {
        let body = call_body(id, "regional", r#"{"region": "eu"}"#, None);
        send(alice.raw(body, "tools/call", Some("regional"), headers))
    };
    // Never listed: not checked.
    let (status, m) = call(1, &[("mcp-param-region", "us")]).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(text(&m["result"]), "ran regional", "{m}");
    // The client lists the tools through the identity's relay.
    let l = alice.request(2, "tools/list", json!({"_meta": meta()})).await;
    assert_eq!(l["result"]["tools"][0]["name"], "regional", "{l}");
    let before = ran();
    for (id, headers) in [(3, vec![("mcp-param-region", "us")]), (4, vec![])] {
        let (status, m) = call(id, &headers).await;
        assert_eq!(status, 400, "{headers:?}: {m}");
        assert_eq!(m["error"]["code"], -32020, "{m}");
    }
    assert_eq!(ran(), before, "nothing reached the upstream");
    // Matching: passes; the child's log (which claims to concern the call) is dropped.
    let resp = alice
        .raw(
            call_body(5, "regional", r#"{"region": "eu"}"#, None),
            "tools/call",
            Some("regional"),
            &[("mcp-param-region", "eu")],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let messages = http_support::messages(resp).await;
    assert_eq!(messages.len(), 1, "the answer alone: {messages:?}");
    assert_eq!(messages[0]["id"], 5, "{messages:?}");
    assert!(!messages[0].to_string().contains("relatedRequest"), "{messages:?}");
    assert_eq!(ran().lines().count(), 2, "{}", ran());
    gw.stop().await;
}
