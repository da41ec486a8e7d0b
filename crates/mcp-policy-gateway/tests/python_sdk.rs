//! The official Python MCP SDK (`mcp` from PyPI) as the client, `mcp-server-time` (PyPI) as the
//! upstream, the gateway between them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use serde_json::{Value, json};
use support::{gateway_bin, node_server, python_with_sdk, time_server, write};

const POLICY: &str = r#"{"version": "1", "default": "deny", "tools": {
  "get_current_time": {"deny_if": [{"conditions": [{"path": "args.timezone", "op": "eq", "value": "Europe/Paris"}],
                                    "on_deny": "Paris is closed"}]},
  "convert_time": {"approve_if": [{"conditions": [], "reason": "conversions need a human"}]}}}"#;

async fn run_client(approve: bool, log: &std::path::Path) -> Option<Value> {
    let python = python_with_sdk()?;
    let upstream = time_server()?;
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.json", POLICY);
    let mut args = vec![
        "--policy".to_owned(),
        policy.to_str().unwrap().to_owned(),
        "--decision-log".to_owned(),
        log.to_str().unwrap().to_owned(),
        "--".to_owned(),
    ];
    args.extend(upstream.iter().map(|a| a.to_string_lossy().into_owned()));
    let spec = json!({
        "command": gateway_bin(),
        "args": args,
        "approve": approve,
        "calls": [
            ["get_current_time", {"timezone": "UTC"}],
            ["get_current_time", {"timezone": "Europe/Paris"}],
            ["convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}],
        ],
    });
    Some(run_python(&python, &spec).await)
}

/// Runs tests/python/client.py with `spec`; returns what it printed.
async fn run_python(python: &std::path::Path, spec: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client.py");
    let out = tokio::time::timeout(
        support::PATIENCE,
        tokio::process::Command::new(python).arg(script).arg(spec.to_string()).output(),
    )
    .await
    .expect("the Python client did not finish")
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn python_sdk_client_sees_allowed_denied_and_approved_calls() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let Some(out) = run_client(true, &log).await else { return };
    assert_eq!(out["server"], "mcp-time", "the upstream's identity passes through");
    assert_eq!(out["tools"], json!(["convert_time", "get_current_time"]));
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(calls[0]["is_error"], false);
    assert!(calls[0]["text"].as_str().unwrap().contains("\"timezone\": \"UTC\""));
    assert_eq!(calls[1]["is_error"], true);
    assert_eq!(
        calls[1]["text"],
        "Denied by policy: Paris is closed. Do not retry this call; choose another way to reach the goal."
    );
    // mcp-server-time's tools declare an outputSchema: the refusal has no structured content,
    // which the SDK would validate against it.
    assert_eq!(calls[1]["structured"], Value::Null);
    assert_eq!(calls[2]["is_error"], false, "{}", calls[2]);
    assert!(calls[2]["text"].as_str().unwrap().contains("Asia/Tokyo"));
    assert_eq!(out["asked"].as_array().unwrap().len(), 1);
    let lines = support::log_lines_at_least(&log, 4).await;
    let decisions: Vec<&str> = lines.iter().map(|l| l["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, vec!["allow", "deny", "approve", "allow"]);
}

#[tokio::test]
async fn python_sdk_client_declining_an_approval_gets_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let Some(out) = run_client(false, &log).await else { return };
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(calls[2]["is_error"], true);
    assert!(calls[2]["text"].as_str().unwrap().starts_with("Approval declined"));
    let lines = support::log_lines_at_least(&log, 4).await;
    let last = lines.last().unwrap();
    assert_eq!(last["approval"], "declined");
    assert_eq!(last["outcome"], "not_dispatched");
}

#[tokio::test]
async fn python_sdk_client_that_times_out_while_the_human_decides_runs_nothing() {
    let Some(python) = python_with_sdk() else { return };
    let Some(upstream) = node_server("@modelcontextprotocol/server-filesystem") else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let data = data.canonicalize().unwrap();
    let policy = write(
        dir.path(),
        "policy.json",
        r#"{"version": "1", "default": "deny", "tools": {"list_allowed_directories": {},
            "create_directory": {"approve_if": [{"conditions": [], "reason": "needs a human"}]}}}"#,
    );
    let log = dir.path().join("log.jsonl");
    let mut args = vec![
        "--policy".to_owned(),
        policy.to_str().unwrap().to_owned(),
        "--decision-log".to_owned(),
        log.to_str().unwrap().to_owned(),
        "--".to_owned(),
    ];
    args.extend(upstream.iter().map(|a| a.to_string_lossy().into_owned()));
    args.push(data.to_str().unwrap().to_owned());
    let late = data.join("late");
    // The human takes 3 s; the SDK gives up after 1 s and sends `notifications/cancelled`. The
    // human's late accept (if the SDK still sends it) must not run the call: the script waits
    // 4 s, then makes another call so that everything before it has been handled.
    let spec = json!({
        "command": gateway_bin(),
        "args": args,
        "approve": true,
        "elicit_delay": 3,
        "calls": [
            ["create_directory", {"path": late.to_str().unwrap()}, {"timeout": 1}],
            ["list_allowed_directories", {}, {"sleep_before": 4}],
        ],
    });
    let out = run_python(&python, &spec).await;
    let calls = out["calls"].as_array().unwrap();
    assert!(calls[0]["exception"].as_str().unwrap().contains("timed out"), "{}", calls[0]);
    assert_eq!(calls[1]["is_error"], false);
    assert_eq!(out["asked"].as_array().unwrap().len(), 1);
    assert!(!late.exists(), "the cancelled call reached the server");
    let outcomes: Vec<Value> =
        support::log_lines_at_least(&log, 3).await.iter().map(|l| l["outcome"].clone()).collect();
    assert_eq!(outcomes, vec![json!("approval_requested"), json!("cancelled"), json!("ok")]);
}
