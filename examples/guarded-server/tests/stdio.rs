//! The example server as a child process, driven by rmcp's child-process client over stdio.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn params(tool: &'static str, args: Value) -> CallToolRequestParams {
    let mut p = CallToolRequestParams::new(tool);
    p.arguments = args.as_object().cloned();
    p
}

#[tokio::test]
async fn the_example_server_is_guarded_over_stdio() {
    // A sandbox of this test's own, and the example policy pointed at it.
    let sandbox = std::env::temp_dir().join(format!("mcp-policy-guarded-{}", std::process::id()));
    std::fs::create_dir_all(&sandbox).unwrap();
    std::fs::write(sandbox.join("notes.txt"), "hello").unwrap();
    let sandbox = sandbox.to_string_lossy().into_owned();
    let policy = include_str!("../policy.json").replace("/tmp/mcp-policy-demo", &sandbox);
    let policy_path =
        std::env::temp_dir().join(format!("mcp-policy-guarded-{}.json", std::process::id()));
    std::fs::write(&policy_path, policy).unwrap();

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_guarded-server"));
    command.arg(&policy_path).env("MCP_POLICY_GRANT", "test");
    let client = ().serve(TokioChildProcess::new(command).unwrap()).await.unwrap();

    let tools: Vec<String> =
        client.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert_eq!(tools, ["list_dir", "read_file", "write_file"], "delete_file is hidden");

    let r = client
        .call_tool(params("read_file", json!({"path": format!("{sandbox}/notes.txt")})))
        .await
        .unwrap();
    assert_eq!(text(&r), "hello");
    let r = client.call_tool(params("list_dir", json!({"path": sandbox}))).await.unwrap();
    assert_eq!(text(&r), "notes.txt");

    // Outside the sandbox, also through `..`: denied by the `within` requirement.
    for path in ["/etc/passwd".to_owned(), format!("{sandbox}/../../etc/passwd")] {
        let r = client.call_tool(params("read_file", json!({"path": path}))).await.unwrap();
        assert_eq!(r.is_error, Some(true), "{path}");
        let s = r.structured_content.unwrap();
        assert_eq!(s["rule"], "/all_tools/require/0", "{path}");
        assert_eq!(s["message"], format!("only paths under {sandbox} are allowed"));
    }
    // A path of the wrong type never passes.
    let r = client.call_tool(params("read_file", json!({"path": ["/etc/passwd"]}))).await.unwrap();
    assert_eq!(r.is_error, Some(true));

    // The hidden tool, called anyway.
    let r = client
        .call_tool(params("delete_file", json!({"path": format!("{sandbox}/notes.txt")})))
        .await
        .unwrap();
    assert_eq!(r.structured_content.unwrap()["rule"], "/hide/0");
    assert!(std::path::Path::new(&format!("{sandbox}/notes.txt")).exists());

    // A script needs a human, and this client cannot ask one.
    let r = client
        .call_tool(params(
            "write_file",
            json!({"path": format!("{sandbox}/run.sh"), "content": "rm -rf /"}),
        ))
        .await
        .unwrap();
    assert_eq!(r.structured_content.unwrap()["decision"], "approve");
    assert!(!std::path::Path::new(&format!("{sandbox}/run.sh")).exists());

    client.cancel().await.unwrap();
    let _ = std::fs::remove_dir_all(&sandbox);
    let _ = std::fs::remove_file(&policy_path);
}
