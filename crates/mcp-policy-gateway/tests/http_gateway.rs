//! The gateway serving streamable HTTP (`--listen`) in front of real MCP servers from npm
//! (`@modelcontextprotocol/server-filesystem` over stdio, `@modelcontextprotocol/server-everything`
//! in its streamableHttp mode), driven by the rmcp client's streamable-HTTP transport and by raw
//! HTTP requests: identity (JWT, header), Origin/Host, metrics, the approvals admin API, Redis
//! replicas, and an HTTP upstream. The upstream's own effects (files written or not) show what
//! reached it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod http_support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use http_support::*;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const POLICY: &str = r#"{
  "version": "1",
  "default": "deny",
  "hide": ["move_file"],
  "tools": {
    "list_allowed_directories": {},
    "read_text_file": {},
    "list_directory": {},
    "write_file": {
      "deny_if": [{ "conditions": [{ "path": "context.claims.role", "op": "eq", "value": "intern" }],
                    "on_deny": "interns may not write files" }],
      "limits": [{ "counter": "writes", "window": "hour", "max": 2, "scope": "grant" }]
    },
    "create_directory": { "approve_if": [{ "conditions": [], "reason": "creating directories needs a human" }] },
    "edit_file": { "deny_if": [{ "conditions": [], "on_deny": "editing files is not allowed" }] }
  }
}"#;

struct Fs {
    dir: tempfile::TempDir,
    data: PathBuf,
    gw: Gateway,
}

impl Fs {
    fn path(&self, name: &str) -> String {
        self.data.join(name).to_str().unwrap().to_owned()
    }
}

/// The gateway with `extra` options in front of the filesystem server.
async fn fs_gateway(extra: &[&str]) -> Option<Fs> {
    let mut upstream = node_server("@modelcontextprotocol/server-filesystem")?;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let data = data.canonicalize().unwrap();
    upstream.push(data.clone().into());
    let policy = write(dir.path(), "policy.json", POLICY);
    let secret = write(dir.path(), "secret", SECRET);
    let admin = write(dir.path(), "admin", "admin-token-0123456789\n");
    let mut args: Vec<String> = Vec::new();
    for a in extra {
        args.push(match *a {
            "SECRET" => secret.to_str().unwrap().to_owned(),
            "ADMIN" => admin.to_str().unwrap().to_owned(),
            "LOG" => dir.path().join("decisions.jsonl").to_str().unwrap().to_owned(),
            other => other.to_owned(),
        });
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = gateway(&policy, &args, &upstream).await;
    Some(Fs { dir, data, gw })
}

const JWT_ARGS: &[&str] = &["--jwt-secret-file", "SECRET", "--audience", "gw", "--issuer", "idp"];

fn rmcp_params(tool: &str, args: Value) -> CallToolRequestParams {
    let mut p = CallToolRequestParams::new(tool.to_owned());
    p.arguments = args.as_object().cloned();
    p
}

#[tokio::test]
async fn rmcp_client_over_http_allowed_denied_hidden_limited_and_metrics() {
    let Some(fs) = fs_gateway(&[]).await else { return };
    let transport = StreamableHttpClientTransport::from_uri(fs.gw.mcp());
    let client = ().serve(transport).await.unwrap();

    let tools = client.list_all_tools().await.unwrap();
    let names: BTreeSet<String> = tools.iter().map(|t| t.name.to_string()).collect();
    assert!(names.contains("write_file") && names.contains("read_text_file"), "{names:?}");
    assert!(!names.contains("move_file"), "hidden tools are not listed: {names:?}");
    assert!(!names.contains("search_files"), "default-denied tools are not listed: {names:?}");

    // Allowed: the file is written by the upstream.
    let a = fs.path("a.txt");
    let r = client
        .call_tool(rmcp_params("write_file", json!({"path": a, "content": "hello"})))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "hello");

    // Denied: the upstream never sees the call; the file is unchanged.
    let r = client
        .call_tool(rmcp_params(
            "edit_file",
            json!({"path": a, "edits": [{"oldText": "hello", "newText": "bye"}]}),
        ))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    let t: String = r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
    assert!(t.contains("editing files is not allowed"), "{t}");
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "hello");

    // Hidden: answered as an unknown tool.
    let r = client
        .call_tool(rmcp_params("move_file", json!({"source": a, "destination": fs.path("b.txt")})))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(std::path::Path::new(&a).exists());

    // Limited: the third write of the hour is refused and never reaches the upstream.
    let b = fs.path("b.txt");
    let r = client
        .call_tool(rmcp_params("write_file", json!({"path": b, "content": "2"})))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true));
    let c = fs.path("c.txt");
    let r = client
        .call_tool(rmcp_params("write_file", json!({"path": c, "content": "3"})))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(!std::path::Path::new(&c).exists(), "a limited call never reached the upstream");

    // Approval without elicitation and without the admin API: no approver.
    let d = fs.path("newdir");
    let r = client.call_tool(rmcp_params("create_directory", json!({"path": d}))).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    let t: String = r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
    assert!(t.contains("No approver is configured"), "{t}");
    assert!(!std::path::Path::new(&d).exists());

    let m = fs.gw.metrics().await;
    assert!(
        m.contains(r#"mcp_policy_gateway_decisions_total{tool="write_file",kind="allow",rule="#),
        "{m}"
    );
    assert!(
        m.contains(r#"tool="write_file",kind="limit",rule="/tools/write_file/limits/0"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"tool="edit_file",kind="deny",rule="/tools/edit_file/deny_if/0"} 1"#),
        "{m}"
    );
    assert!(m.contains(r#"tool="create_directory",kind="approve""#), "{m}");
    assert!(m.contains("mcp_policy_gateway_upstream_latency_seconds_count 2"), "{m}");
    assert!(m.contains("mcp_policy_gateway_store_errors_total 0"), "{m}");
    assert!(m.contains("mcp_policy_gateway_sessions 1"), "{m}");

    // Reload: a refused file and a good one are counted.
    std::fs::write(fs.dir.path().join("policy.json"), "{ not json").unwrap();
    let mut refused = false;
    for _ in 0..200 {
        if fs
            .gw
            .metrics()
            .await
            .contains(r#"mcp_policy_gateway_reloads_total{outcome="refused"} 1"#)
        {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(refused, "the refused reload was not counted");

    client.cancel().await.unwrap();
    let status = fs.gw.stop().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn jwt_none_expired_wrong_audience_bad_signature_are_401() {
    let Some(fs) = fs_gateway(JWT_ARGS).await else { return };
    let cases = [
        (None, "missing"),
        (
            Some(jwt(json!({"sub": "a", "aud": "gw", "iss": "idp", "exp": now() - 600}), SECRET)),
            "expired",
        ),
        (
            Some(jwt(
                json!({"sub": "a", "aud": "other", "iss": "idp", "exp": now() + 600}),
                SECRET,
            )),
            "audience",
        ),
        (
            Some(jwt(json!({"sub": "a", "aud": "gw", "iss": "evil", "exp": now() + 600}), SECRET)),
            "issuer",
        ),
        (
            Some(jwt(
                json!({"sub": "a", "aud": "gw", "iss": "idp", "exp": now() + 600}),
                "another-secret-0123456789-abcdefghijkl",
            )),
            "signature",
        ),
        (Some("not.a.jwt".to_owned()), "invalid"),
    ];
    for (token, why) in cases {
        let mut c = fs.gw.client();
        c.token = token;
        let resp = c.initialize().await.unwrap_err();
        assert_eq!(resp.status(), 401, "{why}");
        let challenge =
            resp.headers().get("www-authenticate").unwrap().to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains(why), "{why}: {body}");
    }
    // A valid token opens a session; the session cannot be used with another identity's token,
    // nor without a token.
    let mut alice = fs.gw.client().with_token(&token_for("alice"));
    alice.initialize().await.unwrap();
    let r = alice.call(1, "list_allowed_directories", json!({})).await;
    assert_ne!(r["isError"], true, "{r}");
    let mut mallory = fs.gw.client().with_token(&token_for("mallory"));
    mallory.session = alice.session.clone();
    let resp = mallory
        .post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "another identity cannot use the session");
    let mut anonymous = fs.gw.client();
    anonymous.session = alice.session.clone();
    let resp = anonymous
        .post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // The session's own identity still works after those attempts.
    let r = alice.call(3, "list_allowed_directories", json!({})).await;
    assert_ne!(r["isError"], true, "{r}");
    // A request without a session id is refused; an unknown one is 404.
    let mut c = fs.gw.client().with_token(&token_for("alice"));
    let resp =
        c.post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    c.session = Some("nope".into());
    let resp =
        c.post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn two_users_have_separate_counts_and_claims_reach_conditions() {
    let Some(fs) = fs_gateway(JWT_ARGS).await else { return };
    // Through the rmcp client with a bearer token.
    let config =
        StreamableHttpClientTransportConfig::with_uri(fs.gw.mcp()).auth_header(token_for("alice"));
    let alice = ().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap();
    let mut bob = fs.gw.client().with_token(&token_for("bob"));
    bob.initialize().await.unwrap();
    for i in 0..2 {
        let p = fs.path(&format!("alice{i}"));
        let r = alice
            .call_tool(rmcp_params("write_file", json!({"path": p, "content": "x"})))
            .await
            .unwrap();
        assert_ne!(r.is_error, Some(true), "{r:?}");
    }
    let p = fs.path("alice2");
    let r = alice
        .call_tool(rmcp_params("write_file", json!({"path": p, "content": "x"})))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true), "alice's third write is limited");
    assert!(!std::path::Path::new(&p).exists());
    // Bob's count is his own.
    for i in 0..2 {
        let p = fs.path(&format!("bob{i}"));
        let r = bob.call(10 + i, "write_file", json!({"path": p, "content": "x"})).await;
        assert_ne!(r["isError"], true, "{r}");
        assert!(std::path::Path::new(&p).exists());
    }
    let r = bob.call(20, "write_file", json!({"path": fs.path("bob2"), "content": "x"})).await;
    assert_eq!(r["isError"], true);
    // An intern's token: the claim reaches the condition.
    let intern = jwt(
        json!({"sub": "carol", "role": "intern", "aud": "gw", "iss": "idp", "exp": now() + 600}),
        SECRET,
    );
    let mut carol = fs.gw.client().with_token(&intern);
    carol.initialize().await.unwrap();
    let p = fs.path("carol");
    let r = carol.call(1, "write_file", json!({"path": p, "content": "x"})).await;
    assert!(text(&r).contains("interns may not write files"), "{r}");
    assert!(!std::path::Path::new(&p).exists());
    alice.cancel().await.unwrap();
}

#[tokio::test]
async fn origin_and_host_are_checked_and_remote_addresses_refused() {
    let Some(fs) = fs_gateway(&[]).await else { return };
    let port = fs.gw.base.rsplit(':').next().unwrap().to_owned();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let c = fs.gw.client();
    let resp = c.post(&init).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let resp =
        c.post(&init).header("host", format!("rebound.evil.example:{port}")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let resp = c.post(&init).header("origin", "http://localhost:5173").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c.post(&init).header("host", format!("localhost:{port}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // /healthz needs nothing.
    assert_eq!(fs.gw.get("/healthz", None).await.text().await.unwrap(), "ok\n");

    // A non-loopback address is refused without --allow-remote.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-policy-gateway"))
        .arg("--policy")
        .arg(fs.dir.path().join("policy.json"))
        .args(["--listen", "0.0.0.0:0", "--", "true"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}

/// `POST` of `body` to the admin API's `url`, with the admin token.
async fn resolve(admin: &reqwest::Client, url: &str, body: &'static str) -> reqwest::Response {
    admin.post(url).bearer_auth("admin-token-0123456789").body(body).send().await.unwrap()
}

#[tokio::test]
async fn admin_api_approves_once_and_refuses() {
    let args = ["--admin-token-file", "ADMIN", "--grant", "agent", "--decision-log", "LOG"];
    let Some(fs) = fs_gateway(&args).await else { return };
    let mut c = fs.gw.client();
    c.initialize().await.unwrap();
    let d = fs.path("approved");
    let r = c.call(1, "create_directory", json!({"path": d})).await;
    assert_eq!(r["isError"], true);
    let t = text(&r);
    assert!(t.contains("Waiting for an administrator"), "{t}");
    assert!(!std::path::Path::new(&d).exists());

    // The admin API needs the admin token.
    assert_eq!(fs.gw.get("/approvals", None).await.status(), 401);
    assert_eq!(fs.gw.get("/approvals", Some("wrong-token-000000000")).await.status(), 401);
    let list: Value =
        fs.gw.get("/approvals", Some("admin-token-0123456789")).await.json().await.unwrap();
    let pending = list["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{list}");
    let entry = &pending[0];
    assert_eq!(entry["tool"], "create_directory");
    assert_eq!(entry["arguments"]["path"], d.as_str());
    assert_eq!(entry["grant"], "agent");
    assert_eq!(entry["reason"], "creating directories needs a human");
    let id = entry["id"].as_str().unwrap().to_owned();
    assert!(t.contains(&id), "the agent is told the approval id: {t}");

    // The same call again while pending: same entry, still waiting.
    let r = c.call(2, "create_directory", json!({"path": d})).await;
    assert!(text(&r).contains(&id));
    let admin = reqwest::Client::new();
    let url = format!("{}/approvals/{id}", fs.gw.base);
    let resp = admin.post(&url).body(r#"{"approve": true}"#).send().await.unwrap();
    assert_eq!(resp.status(), 401, "resolving needs the token too");
    let resp = resolve(&admin, &url, "{}").await;
    assert_eq!(resp.status(), 400);
    let resp = resolve(&admin, &url, r#"{"approve": true}"#).await;
    assert_eq!(resp.status(), 200);
    let resp = resolve(&admin, &url, r#"{"approve": false}"#).await;
    assert_eq!(resp.status(), 409, "an approval is resolved once: the first answer stands");
    let list: Value =
        fs.gw.get("/approvals", Some("admin-token-0123456789")).await.json().await.unwrap();
    assert_eq!(list["pending"], json!([]), "a resolved approval is no longer pending: {list}");

    // Approved: the retry passes, once.
    let r = c.call(3, "create_directory", json!({"path": d})).await;
    assert_ne!(r["isError"], true, "{r}");
    assert!(std::path::Path::new(&d).is_dir());
    std::fs::remove_dir(&d).unwrap();
    let r = c.call(4, "create_directory", json!({"path": d})).await;
    assert!(text(&r).contains("Waiting for an administrator"), "approved once only: {r}");
    assert!(!std::path::Path::new(&d).exists());
    let resp = resolve(&admin, &url, r#"{"approve": true}"#).await;
    assert_eq!(resp.status(), 404, "a spent approval id is unknown");

    // Refused: the retry is refused once, saying so; the directory never appears.
    let list: Value =
        fs.gw.get("/approvals", Some("admin-token-0123456789")).await.json().await.unwrap();
    let id2 = list["pending"][0]["id"].as_str().unwrap().to_owned();
    let url2 = format!("{}/approvals/{id2}", fs.gw.base);
    let resp = resolve(&admin, &url2, r#"{"approve": false}"#).await;
    assert_eq!(resp.status(), 200);
    let r = c.call(5, "create_directory", json!({"path": d})).await;
    assert!(text(&r).contains("Approval refused"), "{r}");
    assert!(!std::path::Path::new(&d).exists());
    let r = c.call(6, "create_directory", json!({"path": d})).await;
    assert!(text(&r).contains("Waiting for an administrator"), "refused once: {r}");

    // The decision log says which calls a human let through or refused out of band (its own
    // thread writes the last call's line just after the answer: wait for it).
    let approvals = |log: &str| -> Vec<String> {
        let whole = log.rfind('\n').map_or("", |end| &log[..end]);
        whole
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["tool"] == "create_directory")
            .map(|r| r["approval"].as_str().unwrap_or("-").to_owned())
            .collect()
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    let approvals = loop {
        let log = std::fs::read_to_string(fs.dir.path().join("decisions.jsonl")).unwrap();
        let approvals = approvals(&log);
        // Lines are written in order: the refusal's (call 5) comes after the approval's.
        if approvals.iter().any(|a| a == "refused_out_of_band")
            || std::time::Instant::now() > deadline
        {
            break approvals;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let at = |a: &str| approvals.iter().position(|x| x == a);
    // The first call, waiting for the administrator, says so.
    assert_eq!(at("pending"), Some(0), "{approvals:?}");
    assert!(at("approved_out_of_band").is_some(), "{approvals:?}");
    assert!(at("refused_out_of_band").is_some(), "{approvals:?}");
    assert!(at("approved_out_of_band") < at("refused_out_of_band"), "{approvals:?}");
}

#[tokio::test]
async fn two_replicas_on_one_redis_admit_exactly_max() {
    let Some(redis) = RedisServer::start().await else { return };
    let Some(upstream) = node_server("@modelcontextprotocol/server-everything") else { return };
    let mut upstream = upstream;
    upstream.push("stdio".into());
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.json",
        r#"{"version": "1", "default": "deny", "tools": {"echo": {
            "limits": [{"counter": "echoes", "window": "hour", "max": 5, "scope": "global"}]}}}"#,
    );
    let url = redis.url();
    let a = gateway(&policy, &["--redis", &url], &upstream).await;
    let b = gateway(&policy, &["--redis", &url], &upstream).await;
    let mut ca = a.client();
    let mut cb = b.client();
    ca.initialize().await.unwrap();
    cb.initialize().await.unwrap();
    let mut admitted = 0;
    for i in 0..8 {
        let (a1, b1) = tokio::join!(
            ca.call(i * 2, "echo", json!({"message": "a"})),
            cb.call(i * 2 + 1, "echo", json!({"message": "b"}))
        );
        for r in [a1, b1] {
            if r["isError"] != true {
                assert!(text(&r).contains("Echo"), "{r}");
                admitted += 1;
            } else {
                assert!(text(&r).contains("limit"), "{r}");
            }
        }
    }
    assert_eq!(admitted, 5, "two replicas on one Redis admit exactly max together");
}

/// The gateway with its client on stdio in front of the HTTP upstream `url`: the process, its
/// stdin, the lines of its stdout.
fn stdio_gateway_before(
    policy: &std::path::Path,
    url: &str,
) -> (
    tokio::process::Child,
    tokio::process::ChildStdin,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    let mut stdio = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-policy-gateway"))
        .arg("--policy")
        .arg(policy)
        .args(["--upstream", url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let input = stdio.stdin.take().unwrap();
    let lines = tokio::io::BufReader::new(stdio.stdout.take().unwrap()).lines();
    (stdio, input, lines)
}

#[tokio::test]
async fn http_upstream_url_through_the_gateway() {
    let Some(mut upstream) = node_server("@modelcontextprotocol/server-everything") else { return };
    upstream.push("streamableHttp".into());
    let port = free_port();
    let mut server = tokio::process::Command::new(&upstream[0])
        .args(&upstream[1..])
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait until it listens.
    let mut up = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(up, "server-everything did not listen");
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.json",
        r#"{"version": "1", "default": "deny", "tools": {"echo": {}, "trigger-long-running-operation": {},
            "get-sum": {"deny_if": [{"conditions": [{"path": "args.a", "op": "gt", "value": 100}], "on_deny": "too big"}]}}}"#,
    );
    let url = format!("http://127.0.0.1:{port}/mcp");
    let gw = gateway(&policy, &["--upstream", &url], &[]).await;
    let client = ().serve(StreamableHttpClientTransport::from_uri(gw.mcp())).await.unwrap();
    let tools = client.list_all_tools().await.unwrap();
    let names: BTreeSet<String> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "echo".to_owned(),
            "get-sum".to_owned(),
            "trigger-long-running-operation".to_owned()
        ])
    );
    let r = client.call_tool(rmcp_params("echo", json!({"message": "through"}))).await.unwrap();
    let t: String = r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
    assert!(t.contains("through"), "{t}");
    let r = client.call_tool(rmcp_params("get-sum", json!({"a": 1, "b": 2}))).await.unwrap();
    let t: String = r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
    assert!(t.contains('3'), "{t}");
    let r = client.call_tool(rmcp_params("get-sum", json!({"a": 1000, "b": 2}))).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    let t: String = r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
    assert!(t.contains("too big"), "{t}");
    client.cancel().await.unwrap();
    gw.stop().await;

    // The client on stdio, the upstream over HTTP.
    let (mut stdio, mut input, mut lines) = stdio_gateway_before(&policy, &url);
    for v in [json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})]
    {
        input.write_all(format!("{v}\n").as_bytes()).await.unwrap();
    }
    let line = tokio::time::timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap().unwrap();
    let init: Value = serde_json::from_str(&line).unwrap();
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    for v in [
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "get-sum", "arguments": {"a": 1000, "b": 1}}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "over stdio"}}}),
    ] {
        input.write_all(format!("{v}\n").as_bytes()).await.unwrap();
    }
    input.flush().await.unwrap();
    let mut seen = std::collections::HashMap::new();
    while seen.len() < 2 {
        let line =
            tokio::time::timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap().unwrap();
        let m: Value = serde_json::from_str(&line).unwrap();
        if let Some(id) = m["id"].as_i64() {
            seen.insert(id, m);
        }
    }
    assert_eq!(seen[&2]["result"]["isError"], true);
    assert!(seen[&3]["result"].to_string().contains("over stdio"), "{}", seen[&3]);
    // A call in flight (a second long) when the client closes its input is still answered by
    // the HTTP upstream (its connection used to end with the client's input, and the call got
    // "the upstream MCP server has gone" at once).
    let slow = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
        "name": "trigger-long-running-operation", "arguments": {"duration": 1, "steps": 1}}});
    input.write_all(format!("{slow}\n").as_bytes()).await.unwrap();
    drop(input);
    let answer = loop {
        let line =
            tokio::time::timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap().unwrap();
        let m: Value = serde_json::from_str(&line).unwrap();
        if m["id"] == 4 {
            break m;
        }
    };
    assert!(answer["result"].to_string().contains("completed"), "{answer}");
    let status = tokio::time::timeout(PATIENCE, stdio.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");

    // A client that writes everything at once, not waiting for `initialize`'s answer (a
    // script: `printf ... | mcp-policy-gateway --upstream URL`): what follows `initialize` waits
    // for the session id its answer brings (it was posted without one, and refused with 400).
    let (mut stdio, mut input, mut lines) = stdio_gateway_before(&policy, &url);
    let all: String = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "pipelined"}}}),
    ]
    .iter()
    .map(|v| format!("{v}\n"))
    .collect();
    input.write_all(all.as_bytes()).await.unwrap();
    drop(input);
    let mut seen = std::collections::HashMap::new();
    while let Some(line) = tokio::time::timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap()
    {
        let m: Value = serde_json::from_str(&line).unwrap();
        if let Some(id) = m["id"].as_i64() {
            seen.insert(id, m);
        }
    }
    assert!(seen[&1]["result"]["serverInfo"].is_object(), "{seen:?}");
    assert!(seen[&2]["result"].to_string().contains("pipelined"), "{seen:?}");
    let status = tokio::time::timeout(PATIENCE, stdio.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    let _ = server.kill().await;
}

#[tokio::test]
async fn idle_sessions_end() {
    let Some(fs) = fs_gateway(&["--session-idle-timeout", "1"]).await else { return };
    let pid = fs.gw.child.id().unwrap();
    let mut c = fs.gw.client();
    c.initialize().await.unwrap();
    assert!(wait_children(pid, 1).await);
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let mut ended = false;
    for _ in 0..300 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if children_of(pid).is_empty() {
            ended = true;
            break;
        }
    }
    assert!(ended, "the idle session's upstream was stopped");
    assert_eq!(c.post(&list).send().await.unwrap().status(), 404);
}

/// The pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|f| f.parse::<u32>().ok()) == Some(pid)
            && fields.first() != Some(&"Z")
        {
            out.push(p);
        }
    }
    out
}

async fn wait_children(pid: u32, n: usize) -> bool {
    for _ in 0..300 {
        if children_of(pid).len() == n {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn sessions_have_their_own_upstream_get_stream_delete_and_header_rules() {
    let Some(fs) = fs_gateway(&["--max-sessions", "2"]).await else { return };
    let pid = fs.gw.child.id().unwrap();
    let mut a = fs.gw.client();
    let init = a.initialize().await.unwrap();
    assert!(init["result"]["protocolVersion"].is_string(), "{init}");
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    let mut b = fs.gw.client();
    b.initialize().await.unwrap();
    assert_ne!(a.session, b.session);
    assert!(
        wait_children(pid, 2).await,
        "one upstream process per session: {:?}",
        children_of(pid)
    );
    let mut c = fs.gw.client();
    let resp = c.initialize().await.unwrap_err();
    assert_eq!(resp.status(), 503, "--max-sessions 2");

    // The GET stream: one per session.
    let get = |c: &Raw| {
        c.http
            .get(&c.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", c.session.clone().unwrap())
            .send()
    };
    let stream = get(&a).await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert_eq!(get(&a).await.unwrap().status(), 409);
    drop(stream);

    // Header rules.
    let list = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
    let raw = |accept: &str, content_type: &str, version: &str| {
        a.http
            .post(&a.url)
            .header("accept", accept)
            .header("content-type", content_type)
            .header("mcp-session-id", a.session.clone().unwrap())
            .header("mcp-protocol-version", version)
            .body(list.to_string())
            .send()
    };
    let both = "application/json, text/event-stream";
    let resp = raw(both, "application/json", "1999-01-01").await.unwrap();
    assert_eq!(resp.status(), 400);
    let resp = raw(both, "text/plain", "2025-06-18").await.unwrap();
    assert_eq!(resp.status(), 415);
    let resp = raw("text/html", "application/json", "2025-06-18").await.unwrap();
    assert_eq!(resp.status(), 406);
    let resp = a
        .http
        .post(&a.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700);
    // SSE-only clients get a stream, even for an answer that comes at once.
    let resp = raw("text/event-stream", "application/json", "2025-06-18").await.unwrap();
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    assert!(text.contains("\"tools\""), "{text}");
    // JSON-only clients get JSON.
    let resp = raw("application/json", "application/json", "2025-06-18").await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert!(body["result"]["tools"].is_array(), "{body}");

    // DELETE ends the session and its upstream; the other session goes on.
    let resp = a
        .http
        .delete(&a.url)
        .header("mcp-session-id", a.session.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = a.post(&list).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(wait_children(pid, 1).await, "the session's upstream stopped: {:?}", children_of(pid));
    let r = b.call(1, "list_allowed_directories", json!({})).await;
    assert_ne!(r["isError"], true, "{r}");

    // Stopping the gateway stops every upstream. (Once the gateway has exited, its children
    // would have another parent: they are looked for by their own pids.)
    let upstreams = children_of(pid);
    assert!(!upstreams.is_empty());
    let status = fs.gw.stop().await;
    assert!(status.success());
    let alive = |p: u32| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
            s.rsplit_once(')').is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    while upstreams.iter().any(|p| alive(*p)) {
        assert!(std::time::Instant::now() < deadline, "an upstream outlived the gateway");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A batch in a session of 2025-06-18 or later is refused whole (-32600) and none of it reaches
/// the upstream; a client of 2025-03-26 may still batch, and each call in its batch is decided.
#[tokio::test]
async fn batches_are_refused_after_2025_03_26_and_each_call_decided_before() {
    let Some(fs) = fs_gateway(&[]).await else { return };
    let write = |id: i64, name: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "write_file", "arguments": {"path": fs.path(name), "content": "x"}}})
    };
    let deny = |id: i64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "read_file", "arguments": {"path": fs.path("x")}}})
    };
    for version in ["2025-06-18", "2025-11-25"] {
        let mut c = fs.gw.client();
        c.version = version.to_owned();
        let init = c.initialize().await.unwrap();
        assert_eq!(init["result"]["protocolVersion"], version);
        let name = format!("batched-{version}.txt");
        let resp = c.post(&json!([write(1, &name), deny(2)])).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{version}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["error"]["code"], -32600, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(version), "{answer}");
        // The session goes on, and nothing of the batch reached the server.
        let r = c.call(3, "list_allowed_directories", json!({})).await;
        assert_ne!(r["isError"], true, "{r}");
        assert!(!fs.data.join(&name).exists(), "a refused batch reached the upstream");
    }

    let mut old = fs.gw.client();
    old.version = "2025-03-26".to_owned();
    let init = old.initialize().await.unwrap();
    assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
    let resp = old.post(&json!([write(1, "old.txt"), deny(2)])).send().await.unwrap();
    assert!(resp.status().is_success(), "HTTP {}", resp.status());
    let answers = messages(resp).await;
    let by_id = |id: i64| answers.iter().find(|m| m["id"] == id).unwrap().clone();
    assert_ne!(by_id(1)["result"]["isError"], true, "{answers:?}");
    assert!(fs.data.join("old.txt").exists(), "the allowed call of the batch ran");
    assert_eq!(by_id(2)["result"]["isError"], true, "the denied call of the batch: {answers:?}");
    assert!(text(&by_id(2)["result"]).contains("Unknown tool"), "{answers:?}");
}
