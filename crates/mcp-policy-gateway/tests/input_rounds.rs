//! In-band approvals for clients of protocol 2026-07-28 (no `initialize`, no server-to-client
//! requests): the gateway answers an `approve` decision with an `input_required` result
//! (SEP-2322) carrying an elicitation, and the client calls again with `inputResponses` and the
//! `requestState` token. A raw client speaks 2026-07-28 to the gateway over stdio; the upstream
//! is rmcp's own stdio server (this executable, started with `MCP_POLICY_TEST_UPSTREAM`), which
//! serves the 2026-07-28 lifecycle and writes every call it runs to a file, so that the test
//! sees what reached it.
//!
//! A forged, replayed, declined, other session's or other tool's answer is denied and nothing
//! reaches the upstream; an accepted one is dispatched once. An answer on a session that
//! negotiated a revision with `initialize` counts for nothing: the call is decided afresh.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::io::Write;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use support::{Raw, gateway_command, write};

const POLICY: &str = r#"{"version": "1", "default": "deny", "tools": {
    "read": {},
    "create": {"approve_if": [{"conditions": [], "reason": "creating needs a human"}]},
    "delete": {"approve_if": [{"conditions": [], "reason": "deleting needs a human"}]},
    "ask": {"limits": [{"counter": "ask", "window": "hour", "max": 1}]}}}"#;

/// The upstream: rmcp's stdio server with tools `read`, `create` and `delete`, appending
/// `tool arguments` to the file `MCP_POLICY_TEST_UPSTREAM` names for every call it runs.
#[derive(Clone)]
struct Recorder {
    record: std::path::PathBuf,
}

impl ServerHandler for Recorder {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = Arc::new(json!({"type": "object"}).as_object().cloned().unwrap());
        let tools = ["read", "create", "delete", "ask"]
            .into_iter()
            .map(|n| Tool::new(n, "a tool", schema.clone()))
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.unwrap_or_default());
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.record).unwrap();
        match &request.request_state {
            Some(state) => writeln!(f, "{} {args} {state}", request.name).unwrap(),
            None => writeln!(f, "{} {args}", request.name).unwrap(),
        }
        // `ask` wants input of its own first (SEP-2322), with a state only it understands.
        if request.name == "ask" && request.request_state.is_none() {
            let state = format!("upstream-state-{}", std::process::id());
            return Ok(rmcp::model::InputRequiredResult::from_request_state(state).into());
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("ran {}", request.name))])
            .into())
    }
}

fn meta(elicitation: bool) -> Value {
    let capabilities = if elicitation { json!({"elicitation": {"form": {}}}) } else { json!({}) };
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "raw-2026", "version": "1"}
    })
}

fn call_params(tool: &str, args: Value, answer: Option<(Value, &str)>) -> Value {
    let mut p = json!({"name": tool, "arguments": args, "_meta": meta(true)});
    if let Some((response, token)) = answer {
        p["inputResponses"] = json!({ "mcp-policy/approval": response });
        p["requestState"] = json!(token);
    }
    p
}

fn accept() -> Value {
    json!({"action": "accept", "content": {"approve": true}})
}

fn text(r: &Value) -> String {
    r["result"]["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect()
}

fn ran(record: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(record).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// Asks for approval of `tool` with `args`: the `requestState` token of the round.
async fn round(g: &mut Raw, id: i64, tool: &str, args: Value) -> String {
    let r = g.request(id, "tools/call", call_params(tool, args, None)).await;
    let result = &r["result"];
    assert_eq!(result["resultType"], "input_required", "{r}");
    let ask = &result["inputRequests"]["mcp-policy/approval"];
    assert_eq!(ask["method"], "elicitation/create", "{r}");
    assert!(ask["params"]["message"].as_str().unwrap().contains(tool), "{r}");
    assert_eq!(ask["params"]["requestedSchema"]["properties"]["approve"]["type"], "boolean");
    let token = result["requestState"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64, "{token}");
    assert!(!r.to_string().contains("approval_key"), "{r}");
    token
}

fn assert_denied(r: &Value, what: &str) {
    assert_eq!(r["result"]["isError"], true, "{what}: {r}");
}

async fn scenario() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.json", POLICY);
    let record = dir.path().join("ran.txt");
    let me: std::ffi::OsString = std::env::current_exe().unwrap().into();
    let start = || {
        let mut cmd = gateway_command(&policy, &[], std::slice::from_ref(&me));
        cmd.env("MCP_POLICY_TEST_UPSTREAM", &record);
        Raw::spawn(cmd)
    };
    let mut g = start();

    // Discovery reaches the upstream, which offers 2026-07-28.
    let d = g.request(1, "server/discover", json!({"_meta": meta(true)})).await;
    let versions = d["result"]["supportedVersions"].as_array().unwrap_or_else(|| panic!("{d}"));
    assert!(versions.contains(&json!("2026-07-28")), "{d}");
    assert!(versions.iter().all(|v| v.as_str().unwrap() <= "2026-07-28"), "{d}");

    // No `initialize`: every request carries its context. An allowed call runs.
    let r = g.request(2, "tools/call", call_params("read", json!({"n": 1}), None)).await;
    assert_eq!(text(&r), "ran read", "{r}");
    assert_eq!(ran(&record), vec![r#"read {"n":1}"#]);

    // A call that needs approval gets a round; nothing ran.
    let args = json!({"name": "a"});
    let t1 = round(&mut g, 3, "create", args.clone()).await;
    assert_eq!(ran(&record).len(), 1);

    // A forged token, and a token of another tool, are denied.
    let forged = "0".repeat(64);
    let r = g
        .request(4, "tools/call", call_params("create", args.clone(), Some((accept(), &forged))))
        .await;
    assert_denied(&r, "forged requestState");
    assert!(text(&r).contains("matches no pending approval"), "{r}");
    let r = g
        .request(5, "tools/call", call_params("delete", args.clone(), Some((accept(), &t1))))
        .await;
    assert_denied(&r, "another tool's requestState");
    // Declined: denied, and the token is spent.
    let t2 = round(&mut g, 6, "create", args.clone()).await;
    let decline = json!({"action": "decline"});
    let r =
        g.request(7, "tools/call", call_params("create", args.clone(), Some((decline, &t2)))).await;
    assert_denied(&r, "declined");
    assert!(text(&r).contains("Approval declined"), "{r}");
    let r = g
        .request(8, "tools/call", call_params("create", args.clone(), Some((accept(), &t2))))
        .await;
    assert_denied(&r, "a declined round replayed");
    // An accept without `approve: true` is no approval.
    let t3 = round(&mut g, 9, "create", args.clone()).await;
    let r = g
        .request(
            10,
            "tools/call",
            call_params(
                "create",
                args.clone(),
                Some((json!({"action": "accept", "content": {}}), &t3)),
            ),
        )
        .await;
    assert_denied(&r, "accept without approve");
    assert_eq!(ran(&record).len(), 1, "nothing refused reached the upstream");

    // Another session's token is unknown here, and vice versa.
    let mut other = start();
    let theirs = round(&mut other, 1, "create", args.clone()).await;
    let r = g
        .request(11, "tools/call", call_params("create", args.clone(), Some((accept(), &theirs))))
        .await;
    assert_denied(&r, "another session's requestState");
    assert_eq!(ran(&record).len(), 1);

    // Accepted: dispatched once, without the gateway's answer; the token is then spent.
    let r = g
        .request(12, "tools/call", call_params("create", args.clone(), Some((accept(), &t1))))
        .await;
    assert_eq!(text(&r), "ran create", "{r}");
    assert_eq!(
        ran(&record),
        vec![r#"read {"n":1}"#.to_owned(), r#"create {"name":"a"}"#.to_owned()]
    );
    let r = g
        .request(13, "tools/call", call_params("create", args.clone(), Some((accept(), &t1))))
        .await;
    assert_denied(&r, "a spent requestState replayed");
    // The approval is for those arguments: a round answered for other arguments is refused.
    let t4 = round(&mut g, 14, "create", args.clone()).await;
    let r = g
        .request(
            15,
            "tools/call",
            call_params("create", json!({"name": "b"}), Some((accept(), &t4))),
        )
        .await;
    assert_denied(&r, "an approval used for other arguments");
    assert_eq!(ran(&record).len(), 2, "dispatched once");

    // The upstream's own `input_required` (`ask` admits 1): passed through unchanged; the retry
    // with its state continues the call without a second charge, once; in another session the
    // same state is a new call, charged there.
    let r = g.request(20, "tools/call", call_params("ask", json!({"q": 1}), None)).await;
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    let state = r["result"]["requestState"].as_str().unwrap().to_owned();
    assert!(state.starts_with("upstream-state-"), "{r}");
    let retry = |id: i64, state: &str| {
        let mut p = call_params("ask", json!({"q": 1}), None);
        p["requestState"] = json!(state);
        p["inputResponses"] = json!({"upstream-q": {"action": "accept", "content": {}}});
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": p})
    };
    let r = {
        g.send(retry(21, &state)).await;
        g.response(json!(21)).await
    };
    assert_eq!(text(&r), "ran ask", "continued without a second charge: {r}");
    assert_eq!(ran(&record).last().unwrap(), &format!(r#"ask {{"q":1}} {state}"#));
    let r = {
        g.send(retry(22, &state)).await;
        g.response(json!(22)).await
    };
    assert_denied(&r, "the upstream's state replayed is a new call, limited");
    let r = {
        other.send(retry(2, &state)).await;
        other.response(json!(2)).await
    };
    assert_eq!(text(&r), "ran ask", "another session: a new call, charged there: {r}");
    let r = other.request(3, "tools/call", call_params("ask", json!({"q": 2}), None)).await;
    assert_denied(&r, "the other session's `ask` was charged for it");

    // A client that does not declare elicitation cannot be asked.
    let mut p = call_params("create", args.clone(), None);
    p["_meta"] = meta(false);
    let r = g.request(16, "tools/call", p).await;
    assert_denied(&r, "no elicitation");
    assert!(text(&r).contains("No approver is configured"), "{r}");
    g.close_stdin();
    g.wait_exit().await;

    // On a session that negotiated a revision with `initialize`, an answer counts for nothing:
    // the call is decided afresh (this client did not declare elicitation: no approver).
    let mut old = start();
    let init = old.initialize("2025-11-25", json!({})).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    let r = old
        .request(
            2,
            "tools/call",
            json!({"name": "create", "arguments": args,
            "inputResponses": {"mcp-policy/approval": accept()}, "requestState": theirs}),
        )
        .await;
    assert_denied(&r, "an answer on a 2025-11-25 session");
    assert!(text(&r).contains("No approver is configured"), "{r}");
    assert_eq!(ran(&record).len(), 5, "2 calls of `ask` here, 1 in the other session");
    old.close_stdin();
    old.wait_exit().await;

    other.close_stdin();
    other.wait_exit().await;
}

fn main() {
    if let Some(record) = std::env::var_os("MCP_POLICY_TEST_UPSTREAM") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let server = Recorder { record: record.into() };
            // A gateway that closes before any lifecycle began ends the server too.
            match server.serve(rmcp::transport::stdio()).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                // (the second session's upstream: every call of it was answered by the gateway)
                Err(e) => eprintln!("[upstream] ended before any request reached it: {e}"),
            }
        });
        return;
    }
    // `cargo test -- --list` and filters: one scenario, always run.
    if std::env::args().any(|a| a == "--list") {
        println!("input_rounds: test");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(scenario());
    println!("test input_rounds ... ok");
}
