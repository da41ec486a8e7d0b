//! The official Python MCP SDK (`mcp` from PyPI) as the client of the gateway over streamable
//! HTTP, with a JWT, in front of `@modelcontextprotocol/server-filesystem`: allowed, denied, and
//! approved in band (the SDK's elicitation callback answers on the POST's event stream).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod http_support;

use std::process::Stdio;

use http_support::*;
use serde_json::{Value, json};

const POLICY: &str = r#"{
  "version": "1",
  "default": "deny",
  "tools": {
    "list_allowed_directories": {},
    "write_file": {},
    "create_directory": { "approve_if": [{ "conditions": [], "reason": "creating directories needs a human" }] },
    "edit_file": { "deny_if": [{ "conditions": [], "on_deny": "editing files is not allowed" }] }
  }
}"#;

fn python() -> Option<std::path::PathBuf> {
    let python = deps_dir().join("venv/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import mcp, httpx2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip("MCP_POLICY_REQUIRE_PYTHON", "the Python MCP SDK (`mcp` from PyPI)");
        return None;
    }
    Some(python)
}

async fn run_client(python: &std::path::Path, spec: Value) -> Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/http_client.py");
    let out = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new(python).arg(script).arg(spec.to_string()).output(),
    )
    .await
    .expect("the python client hung")
    .unwrap();
    assert!(out.status.success(), "python client failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn python_sdk_over_http_with_a_jwt() {
    let Some(python) = python() else { return };
    let Some(mut upstream) = node_server("@modelcontextprotocol/server-filesystem") else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let data = data.canonicalize().unwrap();
    upstream.push(data.clone().into());
    let policy = write(dir.path(), "policy.json", POLICY);
    let secret = write(dir.path(), "secret", SECRET);
    let gw = gateway(
        &policy,
        &["--jwt-secret-file", secret.to_str().unwrap(), "--audience", "gw", "--issuer", "idp"],
        &upstream,
    )
    .await;
    let file = data.join("a.txt");
    let approved = data.join("approved");
    let declined = data.join("declined");
    let out = run_client(
        &python,
        json!({
            "url": gw.mcp(),
            "token": token_for("alice"),
            "approve": true,
            "calls": [
                ["write_file", {"path": file, "content": "py"}],
                ["edit_file", {"path": file, "edits": [{"oldText": "py", "newText": "no"}]}],
                ["create_directory", {"path": approved}],
            ]
        }),
    )
    .await;
    assert_eq!(
        out["tools"],
        json!(["create_directory", "edit_file", "list_allowed_directories", "write_file"])
    );
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(calls[0]["is_error"], false, "{out}");
    assert_eq!(calls[1]["is_error"], true);
    assert!(calls[1]["text"].as_str().unwrap().contains("editing files is not allowed"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "py",
        "the denied edit never reached the server"
    );
    assert_eq!(calls[2]["is_error"], false, "approved in band: {out}");
    assert!(approved.is_dir());
    assert_eq!(out["asked"].as_array().unwrap().len(), 1);

    let out = run_client(
        &python,
        json!({
            "url": gw.mcp(),
            "token": token_for("bob"),
            "approve": false,
            "calls": [["create_directory", {"path": declined}]]
        }),
    )
    .await;
    assert_eq!(out["calls"][0]["is_error"], true, "{out}");
    assert!(!declined.exists());

    // Without a token the SDK is refused (401, whose JSON-RPC error it reports).
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/http_client.py");
    let spec = json!({"url": gw.mcp(), "calls": []});
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(spec.to_string())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unauthorized"), "{err}");
    gw.stop().await;
}
