//! The gateway in front of `@modelcontextprotocol/server-filesystem` (npm), driven by the rmcp
//! client: the server's own effects (files written or not) show what reached it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;

use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use serde_json::{Value, json};
use support::{TestClient, gateway_command, log_lines_at_least, node_server, rmcp_client, write};

const POLICY: &str = r#"{
  "version": "1",
  "default": "deny",
  "hide": ["move_file"],
  "tools": {
    "read_text_file": {},
    "list_allowed_directories": {},
    "list_directory": {},
    "write_file": { "limits": [{ "counter": "writes", "window": "minute", "max": 10 }] },
    "create_directory": { "approve_if": [{ "conditions": [], "reason": "creating directories needs a human" }] },
    "edit_file": { "deny_if": [{ "conditions": [], "on_deny": "editing files is not allowed" }] }
  }
}"#;

struct Setup {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    log: std::path::PathBuf,
    client: RunningService<RoleClient, TestClient>,
}

async fn setup(policy: &str, extra: &[&str], handler: TestClient) -> Option<Setup> {
    let mut upstream = node_server("@modelcontextprotocol/server-filesystem")?;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let data = data.canonicalize().unwrap();
    let policy = write(dir.path(), "policy.json", policy);
    let log = dir.path().join("decisions.jsonl");
    let log_arg = log.to_str().unwrap().to_owned();
    let mut args = vec!["--decision-log", &log_arg];
    args.extend_from_slice(extra);
    upstream.push(data.clone().into());
    let cmd = gateway_command(&policy, &args, &upstream);
    let client = rmcp_client(cmd, handler).await;
    Some(Setup { _dir: dir, data, log, client })
}

fn params(tool: &str, args: Value) -> CallToolRequestParams {
    let mut p = CallToolRequestParams::new(tool.to_owned());
    p.arguments = args.as_object().cloned();
    p
}

async fn call(s: &Setup, tool: &str, args: Value) -> CallToolResult {
    s.client.call_tool(params(tool, args)).await.unwrap()
}

fn text(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect()
}

fn path_in(data: &Path, name: &str) -> String {
    data.join(name).to_str().unwrap().to_owned()
}

#[tokio::test]
async fn lists_only_visible_tools_and_relays_allowed_calls() {
    let Some(s) = setup(POLICY, &[], TestClient::default()).await else { return };
    let tools = s.client.list_all_tools().await.unwrap();
    let names: BTreeSet<String> = tools.iter().map(|t| t.name.to_string()).collect();
    let expected: BTreeSet<String> = [
        "read_text_file",
        "list_allowed_directories",
        "list_directory",
        "write_file",
        "create_directory",
        "edit_file",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(names, expected, "hidden and default-denied tools are absent");

    // The server's instructions and capabilities pass through.
    let info = s.client.peer_info().unwrap();
    assert!(info.capabilities.tools.is_some());

    std::fs::write(s.data.join("hello.txt"), "hello from disk").unwrap();
    let r = call(&s, "read_text_file", json!({"path": path_in(&s.data, "hello.txt")})).await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert!(text(&r).contains("hello from disk"), "{r:?}");
    s.client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_denied_call_never_reaches_the_server() {
    let Some(s) = setup(POLICY, &[], TestClient::default()).await else { return };
    let file = s.data.join("notes.txt");
    std::fs::write(&file, "original").unwrap();
    let r = call(
        &s,
        "edit_file",
        json!({"path": path_in(&s.data, "notes.txt"), "edits": [{"oldText": "original", "newText": "changed"}]}),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
    assert!(
        text(&r).starts_with("Denied by policy: editing files is not allowed."),
        "{}",
        text(&r)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "original");

    // A default-denied tool (not listed) is refused as an unknown tool; the file is unchanged.
    let r =
        call(&s, "write_file", json!({"path": path_in(&s.data, "w.txt"), "content": "x"})).await;
    assert_ne!(r.is_error, Some(true), "write_file is allowed: {r:?}");
    s.client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_eleventh_write_is_limited_and_leaves_no_file() {
    let Some(s) = setup(POLICY, &[], TestClient::default()).await else { return };
    for i in 0..10 {
        let name = format!("f{i}.txt");
        let r =
            call(&s, "write_file", json!({"path": path_in(&s.data, &name), "content": "x"})).await;
        assert_ne!(r.is_error, Some(true), "call {i}: {r:?}");
        assert!(s.data.join(&name).exists());
    }
    let r =
        call(&s, "write_file", json!({"path": path_in(&s.data, "f10.txt"), "content": "x"})).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("Rate limited by policy:"), "{}", text(&r));
    assert!(text(&r).contains("Retry after"), "{}", text(&r));
    assert!(!s.data.join("f10.txt").exists(), "the limited call reached the server");
    let lines = log_lines_at_least(&s.log, 11).await;
    let last = lines.last().unwrap();
    assert_eq!(last["decision"], "limit");
    assert_eq!(last["outcome"], "not_dispatched");
    assert_eq!(last["rule"], "/tools/write_file/limits/0");
    s.client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_hidden_tool_is_absent_and_refused_like_an_unknown_tool() {
    let Some(s) = setup(POLICY, &[], TestClient::default()).await else { return };
    std::fs::write(s.data.join("a.txt"), "a").unwrap();
    let hidden = call(
        &s,
        "move_file",
        json!({"source": path_in(&s.data, "a.txt"), "destination": path_in(&s.data, "b.txt")}),
    )
    .await;
    let unknown = call(&s, "no_such_tool", json!({})).await;
    assert_eq!(hidden.is_error, Some(true));
    assert_eq!(text(&hidden), "Unknown tool: `move_file`.");
    assert_eq!(text(&unknown), "Unknown tool: `no_such_tool`.");
    assert_eq!(hidden.structured_content, None);
    assert_eq!(unknown.structured_content, None);
    assert!(!text(&hidden).contains("hidden"));
    assert!(s.data.join("a.txt").exists() && !s.data.join("b.txt").exists());
    // The operator's log keeps the rule.
    let lines = log_lines_at_least(&s.log, 2).await;
    assert!(lines.iter().any(|l| l["tool"] == "move_file" && l["rule"] == "/hide/0"));
    s.client.cancel().await.unwrap();
}

#[tokio::test]
async fn approval_accepted_in_band_runs_the_call_once() {
    let handler = TestClient { approve: Some(true), ..Default::default() };
    let Some(s) = setup(POLICY, &[], handler.clone()).await else { return };
    let r = call(&s, "create_directory", json!({"path": path_in(&s.data, "approved")})).await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert_eq!(handler.asked.load(Ordering::SeqCst), 1);
    assert!(s.data.join("approved").is_dir());
    let lines = log_lines_at_least(&s.log, 2).await;
    let kinds: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["decision"].as_str().unwrap(), l["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("approve", "approval_requested"), ("allow", "ok")]);
    assert_eq!(lines[1]["approval"], "accepted");
    s.client.cancel().await.unwrap();
}

#[tokio::test]
async fn approval_declined_in_band_never_reaches_the_server() {
    let handler = TestClient { approve: Some(false), ..Default::default() };
    let Some(s) = setup(POLICY, &[], handler.clone()).await else { return };
    let r = call(&s, "create_directory", json!({"path": path_in(&s.data, "declined")})).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("Approval declined"), "{}", text(&r));
    assert_eq!(handler.asked.load(Ordering::SeqCst), 1);
    assert!(!s.data.join("declined").exists());
    s.client.cancel().await.unwrap();
}

#[tokio::test]
async fn approval_without_elicitation_is_denied_with_no_approver() {
    let Some(s) = setup(POLICY, &[], TestClient::default()).await else { return };
    let r = call(&s, "create_directory", json!({"path": path_in(&s.data, "nobody")})).await;
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(
        t.starts_with("Approval required by policy: creating directories needs a human."),
        "{t}"
    );
    assert!(t.contains("No approver is configured"), "{t}");
    // The secret approval key never reaches the client.
    let structured = r.structured_content.clone().unwrap_or_default();
    assert!(structured.get("approval_key").is_none(), "{structured}");
    assert!(!s.data.join("nobody").exists());
    s.client.cancel().await.unwrap();
}

#[tokio::test]
async fn monitor_mode_logs_the_decision_and_dispatches_anyway() {
    let Some(s) = setup(POLICY, &["--mode", "monitor"], TestClient::default()).await else {
        return;
    };
    let file = s.data.join("notes.txt");
    std::fs::write(&file, "original").unwrap();
    let r = call(
        &s,
        "edit_file",
        json!({"path": path_in(&s.data, "notes.txt"), "edits": [{"oldText": "original", "newText": "changed"}]}),
    )
    .await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "changed");
    // Nothing is hidden in monitor mode.
    let names: Vec<String> =
        s.client.list_all_tools().await.unwrap().iter().map(|t| t.name.to_string()).collect();
    assert!(names.iter().any(|n| n == "move_file"));
    let lines = log_lines_at_least(&s.log, 1).await;
    let line = lines.iter().find(|l| l["tool"] == "edit_file").unwrap();
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["monitor"], true);
    assert_eq!(line["outcome"], "ok");
    s.client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_decision_log_never_holds_argument_values() {
    let Some(s) = setup(POLICY, &[], TestClient::default()).await else { return };
    let secret = "sk-live-4242-unique-argument-value";
    call(&s, "write_file", json!({"path": path_in(&s.data, "s.txt"), "content": secret})).await;
    call(&s, "edit_file", json!({"path": path_in(&s.data, "s.txt"), "edits": [{"oldText": secret, "newText": secret}]})).await;
    call(&s, "move_file", json!({"source": secret, "destination": secret})).await;
    let lines = log_lines_at_least(&s.log, 3).await;
    let raw = std::fs::read_to_string(&s.log).unwrap();
    assert!(!raw.contains(secret));
    assert_eq!(lines.len(), 3);
    for l in &lines {
        for field in [
            "time",
            "tool",
            "grant",
            "session",
            "decision",
            "rule",
            "message",
            "policy",
            "eval_us",
            "upstream_ms",
            "outcome",
        ] {
            assert!(l.get(field).is_some(), "{field} missing in {l}");
        }
        assert_eq!(l["policy"].as_str().unwrap().len(), 64);
        assert!(l["session"].as_str().unwrap().starts_with("stdio-"));
    }
    assert_eq!(lines[0]["outcome"], "ok");
    assert!(lines[0]["upstream_ms"].is_number());
    assert_eq!(lines[1]["outcome"], "not_dispatched");
    s.client.cancel().await.unwrap();
}

#[tokio::test]
async fn server_to_client_requests_are_relayed_roots() {
    // Started without directories, the filesystem server asks the client for its roots.
    let Some(mut upstream) = node_server("@modelcontextprotocol/server-filesystem") else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let policy = write(dir.path(), "policy.json", POLICY);
    let handler = TestClient { roots: Some(root.clone()), ..Default::default() };
    upstream.truncate(2);
    let client = rmcp_client(gateway_command(&policy, &[], &upstream), handler.clone()).await;
    let r = client.call_tool(params("list_allowed_directories", json!({}))).await.unwrap();
    // The server may ask once the session is up: retry until it has the roots.
    let mut t = text(&r);
    for _ in 0..50 {
        if t.contains(root.to_str().unwrap()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        t = text(&client.call_tool(params("list_allowed_directories", json!({}))).await.unwrap());
    }
    assert!(t.contains(root.to_str().unwrap()), "{t}");
    assert!(handler.roots_asked.load(Ordering::SeqCst) >= 1);
    client.cancel().await.unwrap();
}
