//! `mcp-policy init --server -- COMMAND [ARGS...]`: the tools come from a stdio MCP server that
//! `init` starts (issue 13). A small fake server in Python plays the protocol; when `npx` can
//! run `@modelcontextprotocol/server-everything`, the reference server is asked as well.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

/// A stdio MCP server: newline-delimited JSON-RPC. Its mode (argv[1]) chooses a behaviour; it
/// logs each message it receives to argv[2].
const FAKE_SERVER: &str = r#"
import json, sys
mode, log = sys.argv[1], open(sys.argv[2], "w")

def send(m):
    sys.stdout.write(json.dumps(m) + "\n")
    sys.stdout.flush()

def receive():
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    m = json.loads(line)
    log.write(json.dumps(m) + "\n")
    log.flush()
    return m

if mode == "exit":
    sys.exit(3)
PAGES = {
    None: ([{"name": "list_tables", "description": "List the tables",
             "annotations": {"readOnlyHint": True}},
            {"name": "drop_table", "annotations": {"readOnlyHint": True}}], "page-2"),
    "page-2": ([{"name": "run_query", "description": "Run a SQL query"},
                {"name": "send_payment"}], None),
}
while True:
    m = receive()
    if mode == "silent":
        continue
    method = m.get("method")
    if method == "initialize":
        caps = {} if mode == "no-tools" else {"tools": {"listChanged": False}}
        send({"jsonrpc": "2.0", "id": m["id"], "result": {
            "protocolVersion": "2025-06-18", "capabilities": caps,
            "serverInfo": {"name": "fake", "version": "0"}}})
    elif method == "tools/list":
        # Before answering: a log notification, a line that is not JSON-RPC, and a ping the
        # client must answer before the list comes.
        send({"jsonrpc": "2.0", "method": "notifications/message",
              "params": {"level": "info", "data": "listing"}})
        sys.stdout.write("not json\n")
        send({"jsonrpc": "2.0", "id": "srv-1", "method": "ping"})
        pong = receive()
        assert pong.get("id") == "srv-1" and pong.get("result") == {}, pong
        tools, next_cursor = PAGES[m.get("params", {}).get("cursor")]
        result = {"tools": tools}
        if next_cursor:
            result["nextCursor"] = next_cursor
        send({"jsonrpc": "2.0", "id": m["id"], "result": result})
"#;

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("mcp-policy-init-server-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn python() -> Option<&'static str> {
    ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()))
}

fn init(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-policy"))
        .arg("init")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// The fake server's script, its log, and the python to run it; `None` (after a loud SKIPPED)
/// when there is no python and CI does not require it.
fn fake(name: &str) -> Option<(String, String, &'static str)> {
    let Some(py) = python() else {
        assert!(
            std::env::var_os("MCP_POLICY_REQUIRE_PYTHON").is_none(),
            "python3 is required (MCP_POLICY_REQUIRE_PYTHON is set)"
        );
        eprintln!("SKIPPED: python3 not found; the fake MCP server needs it");
        return None;
    };
    let dir = scratch(name);
    let script = dir.join("server.py");
    std::fs::write(&script, FAKE_SERVER).unwrap();
    Some((
        script.to_string_lossy().into_owned(),
        dir.join("received.jsonl").to_string_lossy().into_owned(),
        py,
    ))
}

#[test]
fn init_asks_a_stdio_server_for_its_tools_page_by_page() {
    let Some((script, log, py)) = fake("ok") else { return };
    let saved = scratch("ok").join("tools.json").to_string_lossy().into_owned();
    let o = init(&["--save-tools", &saved, "--server", "--", py, &script, "ok", &log]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    let tools = p["tools"].as_object().unwrap();
    // Both pages.
    let names: Vec<&str> = tools.keys().map(String::as_str).collect();
    assert_eq!(names, ["drop_table", "list_tables", "run_query", "send_payment"]);
    assert!(
        tools["list_tables"]["description"]
            .as_str()
            .unwrap()
            .starts_with("read (from its MCP annotations)")
    );
    // The server's hint does not make a `drop` safe.
    assert!(
        tools["drop_table"]["description"]
            .as_str()
            .unwrap()
            .starts_with("destructive (from its name)")
    );
    assert_eq!(p["hide"], json!(["drop_table"]));
    assert!(tools["run_query"]["limits"].is_array());
    assert!(tools["send_payment"]["approve_if"].is_array());
    // What the server received, in order: the handshake, then two pages.
    let received: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let methods: Vec<&str> = received.iter().filter_map(|m| m["method"].as_str()).collect();
    assert_eq!(methods, ["initialize", "notifications/initialized", "tools/list", "tools/list"]);
    assert_eq!(received[0]["params"]["clientInfo"]["name"], "mcp-policy");
    assert!(received[0]["params"]["protocolVersion"].is_string());
    let lists: Vec<&Value> = received.iter().filter(|m| m["method"] == "tools/list").collect();
    assert_eq!(lists[1]["params"]["cursor"], "page-2");
    // The saved list is a `tools/list` result that `validate --tools` reads.
    let saved_list: Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(saved_list["tools"].as_array().unwrap().len(), 4);
    let policy = scratch("ok").join("policy.json");
    std::fs::write(&policy, &o.stdout).unwrap();
    let v = Command::new(env!("CARGO_BIN_EXE_mcp-policy"))
        .args(["validate", policy.to_str().unwrap(), "--tools", &saved, "--deny-warnings"])
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn init_gives_up_on_a_server_that_does_not_answer() {
    let Some((script, log, py)) = fake("silent") else { return };
    let o = init(&["--timeout", "1", "--server", "--", py, &script, "silent", &log]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("did not answer `initialize` within 1 s"), "{stderr}");
    assert!(o.stdout.is_empty());
}

#[test]
fn init_reports_a_server_that_exits_or_offers_no_tools() {
    let Some((script, log, py)) = fake("exit") else { return };
    let o = init(&["--server", "--", py, &script, "exit", &log]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("closed its output before answering `initialize`"), "{stderr}");
    let o = init(&["--server", "--", py, &script, "no-tools", &log]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not offer tools"), "{stderr}");
    let o = init(&["--server", "--", "/nonexistent/server"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot start the server `/nonexistent/server`"), "{stderr}");
}

#[test]
fn init_needs_tools_or_a_server_but_not_both() {
    assert_eq!(init(&[]).status.code(), Some(2));
    assert_eq!(init(&["--server"]).status.code(), Some(2));
    assert_eq!(init(&["--tools", "t.json", "--server", "--", "x"]).status.code(), Some(2));
    // A command without `--server` is a mistake, not something to ignore.
    assert_eq!(init(&["--tools", "t.json", "--", "x"]).status.code(), Some(2));
}

/// The reference server of the MCP project, through `npx`. Skipped loudly when `npx` or the
/// package is missing, unless `MCP_POLICY_REQUIRE_NODE=1`.
#[test]
fn init_asks_the_reference_everything_server() {
    let required = std::env::var("MCP_POLICY_REQUIRE_NODE").is_ok_and(|v| v == "1");
    let has_npx = Command::new("npx").arg("--version").output().is_ok_and(|o| o.status.success());
    if !has_npx {
        assert!(!required, "npx is required (MCP_POLICY_REQUIRE_NODE=1)");
        eprintln!("SKIPPED: npx not found; cannot run @modelcontextprotocol/server-everything");
        return;
    }
    let o = init(&[
        "--timeout",
        "120",
        "--server",
        "--",
        "npx",
        "-y",
        "@modelcontextprotocol/server-everything",
        "stdio",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    // No answer to `initialize` (npx could not fetch the package, offline, or it timed out):
    // the package is missing, not broken.
    if o.status.code() != Some(0)
        && !required
        && stderr.contains("answer")
        && stderr.contains("`initialize`")
    {
        eprintln!(
            "SKIPPED: @modelcontextprotocol/server-everything could not be started (offline?): {stderr}"
        );
        return;
    }
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    let tools = p["tools"].as_object().unwrap();
    // Its `echo` tool, whatever else the current version offers.
    assert!(tools.contains_key("echo"), "{:?}", tools.keys().collect::<Vec<_>>());
    assert!(tools.len() >= 5, "{:?}", tools.keys().collect::<Vec<_>>());
}
