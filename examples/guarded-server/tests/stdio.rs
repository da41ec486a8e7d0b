//! The example server as a child process, driven by rmcp's child-process client over stdio.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
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

/// The example server on a sandbox of the test's own (the example policy pointed at it).
struct Server {
    client: RunningService<RoleClient, ()>,
    sandbox: String,
    policy_path: PathBuf,
}

impl Server {
    async fn start(name: &str) -> Server {
        let tag = format!("mcp-policy-guarded-{name}-{}", std::process::id());
        let sandbox = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(sandbox.join("shared")).unwrap();
        std::fs::write(sandbox.join("notes.txt"), "hello").unwrap();
        let sandbox = sandbox.to_string_lossy().into_owned();
        let policy = include_str!("../policy.json").replace("/tmp/mcp-policy-demo", &sandbox);
        let policy_path = std::env::temp_dir().join(format!("{tag}.json"));
        std::fs::write(&policy_path, policy).unwrap();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_guarded-server"));
        command.arg(&policy_path).env("MCP_POLICY_GRANT", "test");
        // The audit log goes to the server's standard error: keep it out of the test output.
        let (transport, _) = TokioChildProcess::builder(command)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let client = ().serve(transport).await.unwrap();
        Server { client, sandbox, policy_path }
    }

    async fn call(&self, tool: &'static str, args: Value) -> CallToolResult {
        self.client.call_tool(params(tool, args)).await.unwrap()
    }

    async fn stop(self) {
        self.client.cancel().await.unwrap();
        let _ = std::fs::remove_dir_all(&self.sandbox);
        let _ = std::fs::remove_file(&self.policy_path);
    }
}

#[tokio::test]
async fn the_example_server_is_guarded_over_stdio() {
    let s = Server::start("guarded").await;
    let sandbox = s.sandbox.clone();

    let tools = s.client.list_all_tools().await.unwrap();
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["list_dir", "read_file", "write_file"], "delete_file is hidden");

    let r = s.call("read_file", json!({"path": format!("{sandbox}/notes.txt")})).await;
    assert_eq!(text(&r), "hello");
    let r = s.call("list_dir", json!({"path": sandbox})).await;
    assert_eq!(r.structured_content.unwrap(), json!({"entries": ["notes.txt", "shared"]}));

    // Outside the sandbox, also through `..`: denied by the `within` requirement.
    for path in ["/etc/passwd".to_owned(), format!("{sandbox}/../../etc/passwd")] {
        let r = s.call("read_file", json!({"path": path})).await;
        assert_eq!(r.is_error, Some(true), "{path}");
        let st = r.structured_content.unwrap();
        assert_eq!(st["rule"], "/all_tools/require/0", "{path}");
        assert_eq!(st["message"], format!("only paths under {sandbox} are allowed"));
    }
    // A path of the wrong type never passes.
    let r = s.call("read_file", json!({"path": ["/etc/passwd"]})).await;
    assert_eq!(r.is_error, Some(true));

    // `list_dir` declares an output schema: its refusals are text alone (clients validate
    // structured content against the schema even on errors).
    assert!(tools.iter().any(|t| t.name == "list_dir" && t.output_schema.is_some()));
    let r = s.call("list_dir", json!({"path": "/etc"})).await;
    assert_eq!(r.is_error, Some(true));
    assert!(r.structured_content.is_none(), "{:?}", r.structured_content);
    assert!(text(&r).contains("only paths under"), "{}", text(&r));

    // The hidden tool, called anyway.
    let r = s.call("delete_file", json!({"path": format!("{sandbox}/notes.txt")})).await;
    // Refused as a tool nobody has heard of: the client does not learn the hide list.
    assert_eq!(r.structured_content.as_ref().unwrap()["rule"], "/default");
    assert!(text(&r).contains("no rule allows this tool"), "{}", text(&r));
    assert!(Path::new(&format!("{sandbox}/notes.txt")).exists());

    // Only plain-data files may be written: a script under any name is refused.
    for name in ["run.sh", "run", "run.bash", "run.txt.sh", ".bashrc", "Makefile", "x.txt\n.sh"] {
        let path = format!("{sandbox}/{name}");
        let r = s.call("write_file", json!({"path": path, "content": "rm -rf /"})).await;
        assert_eq!(r.is_error, Some(true), "{name:?}");
        assert_eq!(
            r.structured_content.unwrap()["rule"],
            "/tools/write_file/require/0",
            "{name:?}"
        );
        assert!(!Path::new(&path).exists(), "{name:?}");
    }
    let r =
        s.call("write_file", json!({"path": format!("{sandbox}/todo.md"), "content": "- x"})).await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert_eq!(std::fs::read_to_string(format!("{sandbox}/todo.md")).unwrap(), "- x");

    // Writing to the shared folder needs a human, and this client cannot ask one.
    let path = format!("{sandbox}/shared/plan.txt");
    let r = s.call("write_file", json!({"path": path, "content": "x"})).await;
    let st = r.structured_content.unwrap();
    assert_eq!(st["decision"], "approve");
    assert!(st.get("approval_key").is_none(), "{st}");
    assert!(!Path::new(&path).exists());

    s.stop().await;
}

#[tokio::test]
async fn failed_calls_count_against_the_limit() {
    // The policy allows 120 calls a minute. Reading a missing file fails in the tool, which ran:
    // the call keeps its charge. (A fixed window may restart once during the loop, so at most
    // 240 calls run; 300 calls in a few seconds are always limited at some point.)
    let s = Server::start("limit").await;
    let mut ran = 0;
    let mut limited = 0;
    for i in 0..300 {
        let path = format!("{}/missing-{i}.txt", s.sandbox);
        let r = s.call("read_file", json!({"path": path})).await;
        assert_eq!(r.is_error, Some(true));
        if text(&r).starts_with("Rate limited by policy") {
            assert_eq!(r.structured_content.unwrap()["decision"], "limit");
            limited += 1;
        } else {
            assert!(text(&r).starts_with("read_file:"), "{}", text(&r));
            ran += 1;
        }
        if i < 120 {
            assert_eq!(limited, 0, "call {i} was limited before 120 had run");
        }
    }
    assert!((120..=240).contains(&ran), "{ran} failed calls ran");
    assert!(limited >= 60, "only {limited} calls were limited");
    s.stop().await;
}
