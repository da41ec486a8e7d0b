//! Raw bytes over the gateway's stdio, against real upstream servers from npm
//! (`@modelcontextprotocol/server-filesystem`, `@modelcontextprotocol/server-everything`):
//! malformed input, protocol negotiation, cancellation of an approval wait, upstream crash,
//! client exit, environment, hot reload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::ffi::OsString;
use std::time::Duration;

use serde_json::{Value, json};
use support::{
    Raw, children_of, gateway_command, gone, log_lines_at_least, node_server, replace, write,
};

const FS_POLICY: &str = r#"{
  "version": "1",
  "default": "deny",
  "tools": {
    "list_allowed_directories": {},
    "write_file": {},
    "create_directory": { "approve_if": [{ "conditions": [], "reason": "creating directories needs a human" }] }
  }
}"#;

fn error_code(m: &Value) -> i64 {
    m["error"]["code"].as_i64().unwrap_or_else(|| panic!("not an error: {m}"))
}

struct Fs {
    dir: tempfile::TempDir,
    data: std::path::PathBuf,
    policy: std::path::PathBuf,
    log: std::path::PathBuf,
}

fn fs_setup(policy: &str) -> Option<(Fs, Vec<OsString>)> {
    let mut upstream = node_server("@modelcontextprotocol/server-filesystem")?;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let data = data.canonicalize().unwrap();
    upstream.push(data.clone().into());
    let policy = write(dir.path(), "policy.json", policy);
    let log = dir.path().join("decisions.jsonl");
    Some((Fs { dir, data, policy, log }, upstream))
}

impl Fs {
    fn path(&self, name: &str) -> String {
        self.data.join(name).to_str().unwrap().to_owned()
    }
    fn log_arg(&self) -> String {
        self.log.to_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn malformed_input_gets_json_rpc_errors_and_never_reaches_the_upstream() {
    let Some((fs, upstream)) = fs_setup(FS_POLICY) else { return };
    let log = fs.log_arg();
    let mut g = Raw::spawn(gateway_command(&fs.policy, &["--decision-log", &log], &upstream));
    g.initialize("2025-06-18", json!({})).await;

    g.send_line("this is not json").await;
    assert_eq!(error_code(&g.until(|m| m["id"].is_null()).await), -32700);
    g.send_bytes(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"\xff\xfe}\n").await;
    assert_eq!(error_code(&g.until(|m| m["id"].is_null()).await), -32700);
    // A batch (2025-06-18 has none) is refused whole: its allowed write never reaches the server.
    let batch = json!([{"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "write_file", "arguments": {"path": fs.path("batched.txt"), "content": "x"}}}]);
    g.send_line(&batch.to_string()).await;
    assert_eq!(error_code(&g.until(|m| m["id"].is_null()).await), -32600);
    // So is a message written as an array of its members' values (which serde can read a
    // struct from), and a call whose `params` is one: neither is a call.
    let positional = json!(["2.0", 12, "tools/call",
        {"name": "write_file", "arguments": {"path": fs.path("positional.txt"), "content": "x"}}]);
    g.send_line(&positional.to_string()).await;
    assert_eq!(error_code(&g.until(|m| m["id"].is_null()).await), -32600);
    let r = g
        .request(
            13,
            "tools/call",
            json!(["write_file", {"path": fs.path("params.txt"), "content": "x"}]),
        )
        .await;
    assert_eq!(error_code(&r), -32602);
    g.send_line(r#"{"jsonrpc":"2.0","id":3,"method":7}"#).await;
    assert_eq!(error_code(&g.response(json!(3)).await), -32600);
    g.send_line(r#"{"id":4,"method":"tools/call","params":{"name":"write_file"}}"#).await;
    assert_eq!(error_code(&g.response(json!(4)).await), -32600);

    // Malformed tool calls are answered by the gateway; none reaches the server.
    let r = g
        .request(5, "tools/call", json!({"arguments": {"path": fs.path("a"), "content": "x"}}))
        .await;
    assert_eq!(error_code(&r), -32602);
    let r = g.request(6, "tools/call", json!({"name": 42})).await;
    assert_eq!(error_code(&r), -32602);
    let r = g.request(7, "tools/call", json!({"name": "write_file", "arguments": "path=b"})).await;
    assert_eq!(error_code(&r), -32602);
    let r = g
        .request(8, "tools/call", json!({"name": "write_file", "arguments": [fs.path("c"), "x"]}))
        .await;
    assert_eq!(error_code(&r), -32602);
    // A tools method the gateway cannot guard is not relayed.
    let r = g.request(9, "tools/batchCall", json!({"calls": [{"name": "write_file"}]})).await;
    assert_eq!(error_code(&r), -32601);
    // Unknown methods reach the server, which answers for itself.
    let r = g.request(10, "no/such/method", json!({})).await;
    assert_eq!(error_code(&r), -32601);

    // The session survives, and a valid call works.
    let r = g.call(11, "write_file", json!({"path": fs.path("ok.txt"), "content": "x"})).await;
    assert!(r["result"].is_object(), "{r}");
    assert!(fs.data.join("ok.txt").exists());
    let names: Vec<String> = std::fs::read_dir(&fs.data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["ok.txt".to_owned()], "only the valid call reached the server");
    let lines = log_lines_at_least(&fs.log, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    g.close_stdin();
    g.wait_exit().await;
}

/// A hostile client writes a call whose arguments hold a key twice (parsers differ on which
/// one counts) over the gateway's stdio, where an allowed call is sent on from its line: the
/// upstream must receive exactly the arguments the policy decided on (each key once), and a
/// call refused on the duplicate it was decided on must not reach it at all. What the upstream
/// receives is recorded by `tee` in front of the real filesystem server.
#[tokio::test]
async fn the_upstream_receives_exactly_the_arguments_the_policy_decided_on() {
    let policy = r#"{"version": "1", "default": "deny", "tools": {
        "write_file": {"deny_if": [{"conditions":
            [{"path": "args.path", "op": "ends_with", "value": "forbidden.txt"}]}]}}}"#;
    let Some((fs, server)) = fs_setup(policy) else { return };
    let record = fs.dir.path().join("upstream-input.jsonl");
    let mut upstream: Vec<OsString> =
        vec!["sh".into(), "-c".into(), r#"tee "$0" | "$@""#.into(), record.clone().into()];
    upstream.extend(server);
    let mut g = Raw::spawn(gateway_command(&fs.policy, &[], &upstream));
    g.initialize("2025-06-18", json!({})).await;
    let (forbidden, fine, later) =
        (fs.path("forbidden.txt"), fs.path("fine.txt"), fs.path("later.txt"));
    let call = |id: i64, first: &str, last: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"write_file","arguments":{{"path":"{first}","content":"x","path":"{last}"}}}}}}"#
        )
    };
    // Decided on the last `path` (fine): allowed, and the upstream gets that one alone.
    g.send_line(&call(1, &forbidden, &fine)).await;
    let r = g.response(json!(1)).await;
    assert!(r["result"].is_object() && r["result"]["isError"] != json!(true), "{r}");
    // Decided on the last `path` (forbidden): refused, and the upstream gets nothing.
    g.send_line(&call(2, &later, &forbidden)).await;
    let r = g.response(json!(2)).await;
    assert_eq!(r["result"]["isError"], json!(true), "{r}");
    g.close_stdin();
    g.wait_exit().await;

    assert!(fs.data.join("fine.txt").exists());
    assert!(!fs.data.join("forbidden.txt").exists());
    assert!(!fs.data.join("later.txt").exists());
    let received = std::fs::read_to_string(&record).unwrap();
    let calls: Vec<&str> = received.lines().filter(|l| l.contains("tools/call")).collect();
    assert_eq!(calls.len(), 1, "{received}");
    assert_eq!(calls[0].matches(r#""path""#).count(), 1, "{}", calls[0]);
    let sent: Value = serde_json::from_str(calls[0]).unwrap();
    assert_eq!(sent["params"]["arguments"], json!({"path": fine, "content": "x"}));
}

#[tokio::test]
async fn protocol_versions_are_negotiated_across_both_ends() {
    let Some((fs, upstream)) = fs_setup(FS_POLICY) else { return };
    let mut g = Raw::spawn(gateway_command(&fs.policy, &[], &upstream));
    // A revision newer than the gateway speaks: the gateway offers the upstream its newest one.
    let discover = g.request(1, "server/discover", json!({})).await;
    assert_eq!(error_code(&discover), -32601);
    let r = g.initialize("2099-01-01", json!({})).await;
    let version = r["result"]["protocolVersion"].as_str().unwrap();
    assert!(
        ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"].contains(&version),
        "{version}"
    );
    // The upstream's instructions and capabilities pass through untouched.
    assert_eq!(r["result"]["serverInfo"]["name"], "secure-filesystem-server");
    assert!(r["result"]["capabilities"]["tools"].is_object());
    let ping = g.request(2, "ping", json!({})).await;
    assert!(ping["result"].is_object(), "{ping}");
    g.close_stdin();
    g.wait_exit().await;
}

#[tokio::test]
async fn a_cancelled_approval_wait_dispatches_nothing() {
    let Some((fs, upstream)) = fs_setup(FS_POLICY) else { return };
    let log = fs.log_arg();
    let mut g = Raw::spawn(gateway_command(&fs.policy, &["--decision-log", &log], &upstream));
    g.initialize("2025-06-18", json!({"elicitation": {}})).await;
    g.send(json!({"jsonrpc": "2.0", "id": 20, "method": "tools/call",
        "params": {"name": "create_directory", "arguments": {"path": fs.path("late")}}}))
        .await;
    let ask = g.until(|m| m["method"] == "elicitation/create").await;
    let ask_id = ask["id"].clone();
    assert!(ask["params"]["message"].as_str().unwrap().contains("create_directory"));
    assert!(!ask.to_string().contains("approval_key"));
    // The client gives up on the call while the human decides...
    g.send(json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 20, "reason": "timed out"}}))
        .await;
    let cancelled = g.until(|m| m["method"] == "notifications/cancelled").await;
    assert_eq!(cancelled["params"]["requestId"], ask_id);
    // ... and a late accept arrives: nothing is dispatched.
    g.send(json!({"jsonrpc": "2.0", "id": ask_id, "result": {"action": "accept", "content": {"approve": true}}}))
        .await;
    let r = g.call(21, "list_allowed_directories", json!({})).await;
    assert!(r["result"].is_object());
    assert!(g.queue.iter().all(|m| m["id"] != json!(20)), "the cancelled call was answered");
    assert!(!fs.data.join("late").exists(), "the cancelled call reached the server");
    let lines = log_lines_at_least(&fs.log, 3).await;
    let outcomes: Vec<&str> = lines
        .iter()
        .filter(|l| l["tool"] == "create_directory")
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["approval_requested", "cancelled"]);
    g.close_stdin();
    g.wait_exit().await;
}

#[tokio::test]
async fn a_failed_elicitation_denies() {
    let Some((fs, upstream)) = fs_setup(FS_POLICY) else { return };
    let mut g = Raw::spawn(gateway_command(&fs.policy, &[], &upstream));
    g.initialize("2025-11-25", json!({"elicitation": {"form": {}}})).await;
    g.send(json!({"jsonrpc": "2.0", "id": 30, "method": "tools/call",
        "params": {"name": "create_directory", "arguments": {"path": fs.path("x")}}}))
        .await;
    let ask = g.until(|m| m["method"] == "elicitation/create").await;
    assert_eq!(ask["params"]["mode"], "form");
    g.send(
        json!({"jsonrpc": "2.0", "id": ask["id"], "error": {"code": -32603, "message": "no UI"}}),
    )
    .await;
    let r = g.response(json!(30)).await;
    assert_eq!(r["result"]["isError"], true);
    assert!(r["result"]["content"][0]["text"].as_str().unwrap().starts_with("Approval failed"));
    assert!(!fs.data.join("x").exists());
    g.close_stdin();
    g.wait_exit().await;
}

#[tokio::test]
async fn a_client_that_leaves_takes_the_upstream_with_it() {
    let Some((fs, upstream)) = fs_setup(FS_POLICY) else { return };
    let mut g = Raw::spawn(gateway_command(&fs.policy, &[], &upstream));
    g.initialize("2025-06-18", json!({})).await;
    let gateway_pid = g.child.id().unwrap();
    let upstream_pids = children_of(gateway_pid);
    assert_eq!(upstream_pids.len(), 1);
    g.close_stdin();
    g.wait_exit().await;
    for pid in upstream_pids {
        assert!(gone(pid).await, "upstream {pid} left behind");
    }
}

fn everything_behind_sh(exit: i32) -> Option<Vec<OsString>> {
    let node = node_server("@modelcontextprotocol/server-everything")?;
    // A process the upstream started keeps its stdout open after it exits: the gateway must not
    // wait for the end of that output.
    let script = format!(
        "sleep 600 & {} {} stdio; exit {exit}",
        node[0].to_string_lossy(),
        node[1].to_string_lossy()
    );
    Some(vec!["sh".into(), "-c".into(), script.into()])
}

#[tokio::test]
async fn an_upstream_crash_answers_pending_calls_and_the_gateway_exits_with_its_status() {
    let Some(upstream) = everything_behind_sh(42) else { return };
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.json", r#"{"version": "1", "default": "allow"}"#);
    let mut g = Raw::spawn(gateway_command(&policy, &[], &upstream));
    g.initialize("2025-06-18", json!({})).await;
    g.send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "trigger-long-running-operation", "arguments": {"duration": 600, "steps": 600},
        "_meta": {"progressToken": "p-1"}}}))
        .await;
    // Progress notifications from the upstream are relayed: the call is running upstream.
    let progress = g.until(|m| m["method"] == "notifications/progress").await;
    assert_eq!(progress["params"]["progressToken"], "p-1");
    let sh = children_of(g.child.id().unwrap());
    assert_eq!(sh.len(), 1);
    let started = children_of(sh[0]);
    assert_eq!(started.len(), 2, "sleep and node");
    let comm = |p: &u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    let node: Vec<u32> = started.iter().copied().filter(|p| comm(p).trim() == "node").collect();
    let sleep: Vec<u32> = started.iter().copied().filter(|p| comm(p).trim() == "sleep").collect();
    assert_eq!((node.len(), sleep.len()), (1, 1));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let r = g.response(json!(5)).await;
    assert_eq!(error_code(&r), -32603);
    assert!(r["error"]["message"].as_str().unwrap().contains("upstream"));
    let status = g.wait_exit().await;
    assert_eq!(status.code(), Some(42));
    assert!(gone(sh[0]).await && gone(node[0]).await);
    assert!(gone(sleep[0]).await, "a process the upstream started was left behind");
}

#[tokio::test]
async fn the_upstream_inherits_the_environment_and_refusals_respect_output_schemas() {
    let Some(node) = node_server("@modelcontextprotocol/server-everything") else { return };
    let mut upstream = node;
    upstream.push("stdio".into());
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.json",
        r#"{"version": "1", "default": "allow", "tools": {
            "get-structured-content": {"deny_if": [{"conditions": []}]},
            "get-sum": {"deny_if": [{"conditions": []}]}}}"#,
    );
    let mut cmd = gateway_command(&policy, &[], &upstream);
    cmd.env("MCP_POLICY_GATEWAY_TEST_MARKER", "inherited-4711");
    let mut g = Raw::spawn(cmd);
    g.initialize("2025-06-18", json!({})).await;
    let r = g.call(1, "get-env", json!({})).await;
    assert!(r.to_string().contains("inherited-4711"), "{r}");
    let list = g.request(2, "tools/list", json!({})).await;
    assert!(list["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == "get-sum"));
    // A tool with an outputSchema: the refusal has no structuredContent (clients validate it).
    let r = g.call(3, "get-structured-content", json!({"location": "New York"})).await;
    assert_eq!(r["result"]["isError"], true);
    assert!(r["result"].get("structuredContent").is_none(), "{r}");
    // A tool without: the decision JSON is there, without any approval key.
    let r = g.call(4, "get-sum", json!({"a": 1, "b": 2})).await;
    assert_eq!(r["result"]["isError"], true);
    assert_eq!(r["result"]["structuredContent"]["decision"], "deny");
    g.close_stdin();
    g.wait_exit().await;
}

#[tokio::test]
async fn hot_reload_applies_good_files_refuses_bad_ones_and_keeps_counts() {
    let limited = |extra: &str| {
        format!(
            r#"{{"version": "1", "default": "deny", "tools": {{
              "list_allowed_directories": {{}}, {extra}
              "write_file": {{"limits": [{{"counter": "writes", "window": "hour", "max": 2}}]}}}}}}"#
        )
    };
    let Some((fs, upstream)) = fs_setup(&limited("")) else { return };
    let (mut g, stderr) = Raw::spawn_with_stderr(gateway_command(&fs.policy, &[], &upstream));
    g.initialize("2025-06-18", json!({})).await;
    for i in 0..2 {
        let r = g
            .call(i, "write_file", json!({"path": fs.path(&format!("w{i}")), "content": "x"}))
            .await;
        assert_ne!(r["result"]["isError"], true, "{r}");
    }
    // A good file replaced by rename: `read_text_file` becomes allowed, the count of `writes`
    // is kept.
    replace(&fs.policy, &limited(r#""read_text_file": {},"#));
    let mut id = 100;
    loop {
        id += 1;
        let r = g.call(id, "read_text_file", json!({"path": fs.path("w0")})).await;
        if r["result"]["isError"] != true {
            break;
        }
        assert!(id < 1100, "the new policy never came into force");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = g.call(2, "write_file", json!({"path": fs.path("w2"), "content": "x"})).await;
    assert_eq!(r["result"]["isError"], true, "the count was lost on reload: {r}");
    assert!(!fs.data.join("w2").exists());

    // A bad file: refused with its diagnostics on stderr; the policy in force stays.
    replace(&fs.policy, r#"{"version": "1", "default": "allow", "tools": {"x": {"limits": 5}}}"#);
    for _ in 0..3000 {
        // (The refusal and its diagnostics are separate lines, which may come apart.)
        let err = stderr.lock().unwrap().clone();
        if err.contains("is refused") && err.contains("policy.json:1:") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = stderr.lock().unwrap().clone();
    assert!(err.contains("is refused"), "{err}");
    // The upstream's own stderr passes through the gateway's.
    assert!(err.contains("Secure MCP Filesystem Server running on stdio"), "{err}");
    assert!(err.contains("policy.json:1:"), "diagnostics with line and column: {err}");
    let r = g.call(3, "read_text_file", json!({"path": fs.path("w0")})).await;
    assert_ne!(r["result"]["isError"], true, "{r}");
    let r = g.call(4, "create_directory", json!({"path": fs.path("d")})).await;
    assert_eq!(r["result"]["content"][0]["text"], "Unknown tool: `create_directory`.");
    assert!(!fs.data.join("d").exists());
    let _ = fs.dir;
    g.close_stdin();
    g.wait_exit().await;
}

#[tokio::test]
async fn a_hung_upstream_answers_errors_after_the_upstream_timeout() {
    let Some(mut upstream) = node_server("@modelcontextprotocol/server-everything") else { return };
    upstream.push("stdio".into());
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.json", r#"{"version": "1", "default": "allow"}"#);
    let log = dir.path().join("log.jsonl");
    let log_arg = log.to_str().unwrap().to_owned();
    // Two seconds: the call after the hang must come back within it on a loaded machine.
    let args = ["--upstream-timeout", "2", "--decision-log", &log_arg];
    let mut g = Raw::spawn(gateway_command(&policy, &args, &upstream));
    g.initialize("2025-06-18", json!({})).await;
    let node = children_of(g.child.id().unwrap());
    assert_eq!(node.len(), 1);
    let pid = nix::unistd::Pid::from_raw(node[0] as i32);
    // The upstream hangs: alive, but answering nothing.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let r = g.call(7, "echo", json!({"message": "hello"})).await;
    assert_eq!(error_code(&r), -32603);
    assert!(r["error"]["message"].as_str().unwrap().contains("did not answer within 2 seconds"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    // Once it is back, the session goes on; its late answer to the abandoned call is dropped.
    let r = g.call(8, "echo", json!({"message": "again"})).await;
    let text = r["result"]["content"][0]["text"].as_str();
    assert!(text.is_some_and(|t| t.contains("again")), "{r}");
    assert!(g.queue.iter().all(|m| m["id"] != json!(7)));
    let outcomes: Vec<Value> =
        log_lines_at_least(&log, 2).await.iter().map(|l| l["outcome"].clone()).collect();
    assert_eq!(outcomes, vec![json!("upstream_timeout"), json!("ok")]);
    g.close_stdin();
    g.wait_exit().await;
}

#[tokio::test]
async fn sighup_reloads_the_policy_when_polling_is_off() {
    let Some((fs, upstream)) = fs_setup(FS_POLICY) else { return };
    std::fs::write(fs.data.join("r.txt"), "readable").unwrap();
    let mut g = Raw::spawn(gateway_command(&fs.policy, &["--policy-poll", "0"], &upstream));
    g.initialize("2025-06-18", json!({})).await;
    let r = g.call(1, "read_text_file", json!({"path": fs.path("r.txt")})).await;
    assert_eq!(r["result"]["content"][0]["text"], "Unknown tool: `read_text_file`.");
    replace(&fs.policy, r#"{"version": "1", "default": "deny", "tools": {"read_text_file": {}}}"#);
    // Polling is off: the old policy stays until SIGHUP.
    let r = g.call(2, "read_text_file", json!({"path": fs.path("r.txt")})).await;
    assert_eq!(r["result"]["isError"], true);
    let pid = nix::unistd::Pid::from_raw(g.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let mut id = 10;
    loop {
        id += 1;
        let r = g.call(id, "read_text_file", json!({"path": fs.path("r.txt")})).await;
        if r["result"]["isError"] != true {
            assert!(r.to_string().contains("readable"));
            break;
        }
        assert!(id < 1000, "SIGHUP did not reload the policy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    g.close_stdin();
    g.wait_exit().await;
}
