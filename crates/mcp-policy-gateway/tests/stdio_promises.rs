//! Promises of docs/gateway.md over stdio that no other test holds, against an upstream the
//! test scripts (this executable started with `scripted-upstream`), so these tests never skip:
//!
//! - "The decision log": every field of a line (`grant` from `--grant`, `session`
//!   `stdio-<uuid>` for the whole run, `policy`, `eval_us`, `upstream_ms`) and the outcomes
//!   `ok`, `tool_error`, `error`, `not_dispatched`, `upstream_closed`;
//! - "Failure behaviour": the upstream writes a line that is not JSON-RPC (dropped, a notice
//!   on stderr that does not quote it); the upstream crashes (the waiting call gets -32603, the
//!   gateway exits with its status); the policy, the decision log or the upstream cannot be
//!   started (exit 2, 2 and 127, with the reason on stderr); SIGINT and SIGTERM (the gateway
//!   ends and takes the upstream with it, exiting with the upstream's status, its decision
//!   log written);
//! - "The decision log": `approval` is `unavailable` when nobody can be asked, `failed` when
//!   the elicitation errs, `declined`; none of those calls reaches the upstream;
//! - `notifications/tools/list_changed` from the upstream: the gateway re-lists the tools for
//!   its own view (a refusal carries `structuredContent` only for a tool listed without an
//!   `outputSchema`);
//! - `--upstream-timeout`: the waiting call gets -32603, the upstream a cancellation of that
//!   request, the log `upstream_timeout`; an approval wait is not subject to it;
//! - the client leaves and the upstream does not (it ignores the end of its input and
//!   SIGTERM): the gateway kills its whole process group and exits with its status (137);
//! - "The command": the upstream runs in the gateway's working directory; `--policy-poll 0`
//!   turns polling off (a changed file is not loaded until SIGHUP), and fractions poll;
//!   `--decision-log PATH` appends;
//! - "Monitor mode": no human is asked, `approve` and `deny` are dispatched, `monitor: true`;
//! - "Approvals": an accepted call is decided again (limits still apply); an accept without
//!   `approve: true` is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "runner/mod.rs"]
mod runner;
#[path = "support/mod.rs"]
mod support;

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Raw, children_of, gateway_command, gone, log_lines_at_least, write};

/// How long one test may take before it fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(300);

/// What the scripted upstream writes that must reach neither the client nor stderr.
const GARBAGE: &str = "GARBAGE-7c1e-never-quoted";

/// The exit status of the scripted upstream's `crash` tool.
const CRASH_STATUS: i32 = 3;

const POLICY: &str = r#"{
  "version": "1",
  "default": "deny",
  "tools": {
    "echo": {},
    "fail": {},
    "err": {},
    "garbage": {},
    "crash": {},
    "cwd": {},
    "swap": {},
    "hang": {},
    "needs": { "approve_if": [{ "conditions": [], "reason": "a human must say" }] },
    "needs_lim": {
      "approve_if": [{ "conditions": [], "reason": "a human must say" }],
      "limits": [{ "counter": "needs_lim", "window": "hour", "max": 1 }]
    },
    "shaped": { "deny_if": [{ "conditions": [] }] }
  }
}"#;

/// The upstream the tests start: it answers `initialize` and `tools/list`, and `tools/call` by
/// the tool's name: `fail` an `isError` result, `err` a JSON-RPC error, `garbage` two lines
/// that are not JSON-RPC (then the result), `crash` exits with [`CRASH_STATUS`] unanswered,
/// `cwd` its working directory, `swap` gives `shaped` an `outputSchema` from then on and says
/// `notifications/tools/list_changed`, `hang` never answers, anything else the text `ran`. A
/// `notifications/cancelled` is answered with a log message saying whether it names the
/// request that hangs.
fn scripted_upstream() {
    let mut out = std::io::stdout().lock();
    let mut swapped = false;
    let mut hanging: Option<Value> = None;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
        if msg["method"] == "notifications/cancelled" {
            // Says (as a log message the gateway relays) whether the cancellation names the
            // request that hangs.
            let matching = hanging.as_ref() == Some(&msg["params"]["requestId"]);
            let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                "params": {"level": "info", "data": {"cancelled": true, "matching": matching}}});
            writeln!(out, "{note}").unwrap();
            out.flush().unwrap();
            continue;
        }
        let (Some(id), Some(method)) = (msg.get("id"), msg["method"].as_str()) else { continue };
        let result = match method {
            "initialize" => json!({
                "protocolVersion": msg["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "scripted-upstream", "version": "1"}
            }),
            "tools/list" => {
                let mut tools: Vec<Value> = [
                    "echo",
                    "fail",
                    "err",
                    "garbage",
                    "crash",
                    "cwd",
                    "needs",
                    "needs_lim",
                    "swap",
                    "hang",
                ]
                .iter()
                .map(|n| json!({"name": n, "inputSchema": {"type": "object"}}))
                .collect();
                let mut shaped = json!({"name": "shaped", "inputSchema": {"type": "object"}});
                if swapped {
                    shaped["outputSchema"] = json!({"type": "object"});
                }
                tools.push(shaped);
                json!({ "tools": tools })
            }
            "tools/call" => match msg["params"]["name"].as_str() {
                Some("fail") => json!({"content": [{"type": "text", "text": "it failed"}],
                    "isError": true}),
                Some("err") => {
                    let e = json!({"jsonrpc": "2.0", "id": id,
                        "error": {"code": -32000, "message": "the tool broke"}});
                    writeln!(out, "{e}").unwrap();
                    out.flush().unwrap();
                    continue;
                }
                Some("garbage") => {
                    writeln!(out, "{GARBAGE} is not JSON").unwrap();
                    writeln!(out, "{}", json!({"jsonrpc": "2.0", "note": GARBAGE})).unwrap();
                    json!({"content": [{"type": "text", "text": "ran"}]})
                }
                Some("crash") => std::process::exit(CRASH_STATUS),
                Some("hang") => {
                    hanging = Some(id.clone());
                    continue;
                }
                Some("swap") => {
                    swapped = true;
                    let changed = json!({"jsonrpc": "2.0",
                        "method": "notifications/tools/list_changed"});
                    writeln!(out, "{changed}").unwrap();
                    json!({"content": [{"type": "text", "text": "ran"}]})
                }
                Some("cwd") => {
                    let cwd = std::env::current_dir().unwrap();
                    json!({"content": [{"type": "text", "text": cwd.to_string_lossy()}]})
                }
                _ => json!({"content": [{"type": "text", "text": "ran"}]}),
            },
            _ => json!({}),
        };
        writeln!(out, "{}", json!({"jsonrpc": "2.0", "id": id, "result": result})).unwrap();
        out.flush().unwrap();
    }
}

fn upstream() -> Vec<OsString> {
    vec![std::env::current_exe().unwrap().into_os_string(), "scripted-upstream".into()]
}

struct Setup {
    dir: tempfile::TempDir,
    policy: PathBuf,
    log: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.json", POLICY);
    let log = dir.path().join("decisions.jsonl");
    Setup { dir, policy, log }
}

fn error_code(m: &Value) -> i64 {
    m["error"]["code"].as_i64().unwrap_or_else(|| panic!("not an error: {m}"))
}

/// The decision log's line for `tool` (the only one).
fn line_for<'a>(lines: &'a [Value], tool: &str) -> &'a Value {
    let mut of = lines.iter().filter(|l| l["tool"] == tool);
    let line = of.next().unwrap_or_else(|| panic!("no line for `{tool}`: {lines:?}"));
    assert!(of.next().is_none(), "two lines for `{tool}`: {lines:?}");
    line
}

async fn the_decision_log_says_what_became_of_each_call() {
    let s = setup();
    let log = s.log.to_str().unwrap();
    let cmd = gateway_command(&s.policy, &["--grant", "alice", "--decision-log", log], &upstream());
    let (mut g, stderr) = Raw::spawn_with_stderr(cmd);
    g.initialize("2025-06-18", json!({})).await;

    let r = g.call(1, "echo", json!({})).await;
    assert_eq!(r["result"]["content"][0]["text"], "ran", "{r}");
    let r = g.call(2, "fail", json!({})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "it failed", "{r}");
    let r = g.call(3, "err", json!({})).await;
    assert_eq!(error_code(&r), -32000);
    let r = g.call(4, "not_in_the_policy", json!({})).await;
    assert_eq!(r["result"]["content"][0]["text"], "Unknown tool: `not_in_the_policy`.");
    // The upstream's lines that are not JSON-RPC are dropped: the client sees the answer only.
    let r = g.call(5, "garbage", json!({})).await;
    assert_eq!(r["result"]["content"][0]["text"], "ran", "{r}");
    let r = g.request(6, "ping", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
    assert!(g.queue.iter().all(|m| !m.to_string().contains(GARBAGE)), "{:?}", g.queue);
    // The upstream crashes while a call waits for it: -32603 for the call, and the gateway
    // exits with the upstream's status.
    let r = g.call(7, "crash", json!({})).await;
    assert_eq!(error_code(&r), -32603, "{r}");
    let status = g.wait_exit().await;
    assert_eq!(status.code(), Some(CRASH_STATUS), "{status}");

    let err = stderr.lock().unwrap().clone();
    assert!(
        err.matches("the upstream wrote a line that is not a JSON-RPC message").count()
            + err.matches("the upstream sent an invalid message").count()
            == 2,
        "a notice for each of the two lines: {err}"
    );
    assert!(!err.contains(GARBAGE), "the notice does not quote the line: {err}");

    let lines = log_lines_at_least(&s.log, 6).await;
    assert_eq!(lines.len(), 6, "{lines:?}");
    for (tool, decision, outcome) in [
        ("echo", "allow", "ok"),
        ("fail", "allow", "tool_error"),
        ("err", "allow", "error"),
        ("not_in_the_policy", "deny", "not_dispatched"),
        ("garbage", "allow", "ok"),
        ("crash", "allow", "upstream_closed"),
    ] {
        let l = line_for(&lines, tool);
        assert_eq!(l["decision"], decision, "{l}");
        assert_eq!(l["outcome"], outcome, "{l}");
        assert_eq!(l["grant"], "alice", "--grant is the grant of every call: {l}");
        assert!(l["eval_us"].as_f64().is_some(), "{l}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
        assert!(l.get("monitor").is_none_or(|m| m == false), "{l}");
    }
    for tool in ["echo", "fail", "err", "garbage"] {
        let l = line_for(&lines, tool);
        assert!(l["upstream_ms"].as_f64().is_some(), "answered: {l}");
    }
    assert_eq!(line_for(&lines, "not_in_the_policy")["upstream_ms"], Value::Null);
    assert_eq!(line_for(&lines, "not_in_the_policy")["rule"], "/default");
    // One session for the run, `stdio-<uuid>`; one policy digest.
    let session = lines[0]["session"].as_str().unwrap();
    let uuid = session.strip_prefix("stdio-").unwrap_or_else(|| panic!("{session}"));
    uuid::Uuid::parse_str(uuid).unwrap();
    let policy = lines[0]["policy"].as_str().unwrap();
    assert!(policy.len() >= 16 && policy.bytes().all(|b| b.is_ascii_hexdigit()), "{policy}");
    for l in &lines {
        assert_eq!(l["session"], session, "{l}");
        assert_eq!(l["policy"], policy, "{l}");
    }
}

/// Runs the gateway with `args` to its exit; its status and stderr.
async fn run_to_exit(args: &[OsString]) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(support::gateway_bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `--policy POLICY ARGS...`
fn with(policy: &Path, args: &[&str]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["--policy".into(), policy.into()];
    a.extend(args.iter().map(OsString::from));
    a
}

async fn what_cannot_start_has_its_exit_status_and_reason() {
    let s = setup();

    // An invalid policy: exit 2, each problem as `file:line:column: message (at pointer)`.
    let bad = write(
        s.dir.path(),
        "bad.json",
        "{\n  \"version\": \"1\",\n  \"tools\": {\n    \"echo\": { \"max_calls\": 3 }\n  }\n}\n",
    );
    let mut args = with(&bad, &["--"]);
    args.extend(upstream());
    let (code, err) = run_to_exit(&args).await;
    assert_eq!(code, Some(2), "{err}");
    let shown = format!("{}:4:", bad.display());
    assert!(err.contains(&shown), "`{shown}` in {err}");
    assert!(err.contains("(at /tools/echo"), "{err}");

    // A decision log that cannot be opened: exit 2, saying which.
    let unopenable = s.dir.path().join("no-such-dir").join("decisions.jsonl");
    let mut args = with(&s.policy, &["--decision-log"]);
    args.push(unopenable.clone().into());
    args.push("--".into());
    args.extend(upstream());
    let (code, err) = run_to_exit(&args).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot open the decision log"), "{err}");
    assert!(!unopenable.exists());

    // An upstream that cannot be started: exit 127, with the reason.
    let args = with(&s.policy, &["--", "/nonexistent/mcp-server"]);
    let (code, err) = run_to_exit(&args).await;
    assert_eq!(code, Some(127), "{err}");
    assert!(err.contains("cannot start the upstream `/nonexistent/mcp-server`"), "{err}");
}

async fn sigint_and_sigterm_end_the_gateway_and_take_the_upstream_with_it() {
    for signal in [nix::sys::signal::SIGINT, nix::sys::signal::SIGTERM] {
        let s = setup();
        let log = s.log.to_str().unwrap();
        let mut g = Raw::spawn(gateway_command(&s.policy, &["--decision-log", log], &upstream()));
        g.initialize("2025-06-18", json!({})).await;
        let r = g.call(1, "echo", json!({})).await;
        assert_eq!(r["result"]["content"][0]["text"], "ran", "{r}");
        let pid = g.child.id().unwrap();
        let kids = children_of(pid);
        assert_eq!(kids.len(), 1, "{kids:?}");
        // stdin stays open: only the signal ends the gateway.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
        let status = g.wait_exit().await;
        // The gateway handled the signal (a gateway killed by it has no exit code) and exits
        // with the upstream's status: the upstream, which ignores nothing, ended by SIGTERM.
        assert_eq!(status.code(), Some(128 + 15), "{signal}: {status}");
        assert!(gone(kids[0]).await, "{signal}: the upstream was left running");
        // The decision log got its line before the exit.
        let lines = support::log_lines(&s.log);
        assert_eq!(lines.len(), 1, "{signal}: {lines:?}");
    }
}

/// `policy.json` replaced by one that denies `echo`.
fn deny_echo(policy: &Path) {
    let text = POLICY.replace(r#""echo": {}"#, r#""echo": {"deny_if": [{"conditions": []}]}"#);
    assert_ne!(text, POLICY);
    support::replace(policy, &text);
}

/// Calls `echo` until it is refused (a minute at most): the new policy was loaded.
async fn until_echo_is_refused(g: &mut Raw, mut id: i64) {
    let deadline = std::time::Instant::now() + support::PATIENCE;
    loop {
        let r = g.call(id, "echo", json!({})).await;
        if r["result"]["isError"] == true {
            assert!(r.to_string().contains("Denied by policy"), "{r}");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the changed policy was never loaded");
        id += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn the_upstream_runs_where_the_gateway_runs_and_policy_poll_0_waits_for_sighup() {
    let s = setup();
    let mut cmd = gateway_command(&s.policy, &["--policy-poll", "0"], &upstream());
    cmd.current_dir(s.dir.path());
    let mut g = Raw::spawn(cmd);
    g.initialize("2025-06-18", json!({})).await;
    let r = g.call(1, "cwd", json!({})).await;
    let cwd = std::path::PathBuf::from(r["result"]["content"][0]["text"].as_str().unwrap());
    assert_eq!(cwd.canonicalize().unwrap(), s.dir.path().canonicalize().unwrap());

    // Polling off: three default polling periods later, the changed file is still not loaded.
    deny_echo(&s.policy);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = g.call(2, "echo", json!({})).await;
    assert_eq!(r["result"]["content"][0]["text"], "ran", "--policy-poll 0 polled: {r}");
    let pid = nix::unistd::Pid::from_raw(g.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGHUP).unwrap();
    until_echo_is_refused(&mut g, 3).await;
    g.close_stdin();
    g.wait_exit().await;

    // A fraction of a second polls.
    let s = setup();
    let mut g = Raw::spawn(gateway_command(&s.policy, &["--policy-poll", "0.1"], &upstream()));
    g.initialize("2025-06-18", json!({})).await;
    let r = g.call(1, "echo", json!({})).await;
    assert_eq!(r["result"]["content"][0]["text"], "ran", "{r}");
    deny_echo(&s.policy);
    until_echo_is_refused(&mut g, 2).await;
    g.close_stdin();
    g.wait_exit().await;
}

/// A client that pipelines calls without pause keeps the relay busy without its ever waiting
/// (each line is already read, each answer written at once): SIGHUP (reload) and SIGTERM must
/// still be handled, with the relay's spin and without it (`--spin 0`).
async fn signals_are_handled_while_a_client_pipelines_calls_without_pause() {
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    let patience = support::PATIENCE;
    for spin in ["0", "200"] {
        let s = setup();
        let mut child = Command::new(support::gateway_bin())
            .args(with(&s.policy, &["--policy-poll", "0", "--spin", spin, "--"]))
            .args(upstream())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "flood", "version": "1"}}});
        writeln!(stdin, "{init}").unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        writeln!(stdin, r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#).unwrap();
        // Until the gateway has gone (its stdin fails).
        let writer = std::thread::spawn(move || {
            let mut id = 1u64;
            loop {
                let mut batch = String::new();
                for _ in 0..500 {
                    batch.push_str(&format!(
                        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{}}}}}}"#
                    ));
                    batch.push('\n');
                    id += 1;
                }
                if stdin.write_all(batch.as_bytes()).is_err() {
                    return;
                }
            }
        });
        // Says "ran" after the first thousand answers, and "refused" at the first refusal.
        let (said, heard) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let (mut answers, mut refused) = (0, false);
            for line in stdout.lines() {
                let Ok(line) = line else { return };
                let m: Value = serde_json::from_str(&line).unwrap();
                answers += 1;
                if answers == 1000 {
                    let _ = said.send("ran");
                }
                if !refused && m["result"]["isError"] == true {
                    refused = true;
                    let _ = said.send("refused");
                }
            }
        });
        assert_eq!(heard.recv_timeout(patience), Ok("ran"), "--spin {spin}");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        deny_echo(&s.policy);
        nix::sys::signal::kill(pid, nix::sys::signal::SIGHUP).unwrap();
        assert_eq!(
            heard.recv_timeout(patience),
            Ok("refused"),
            "--spin {spin}: SIGHUP was not handled while the client pipelined calls"
        );
        nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
        let deadline = std::time::Instant::now() + patience;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("--spin {spin}: SIGTERM was not handled while the client pipelined calls");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(128 + 15), "--spin {spin}: {status}");
        writer.join().unwrap();
        reader.join().unwrap();
    }
}

/// The text of the first content of a tool result.
fn text_of(r: &Value) -> &str {
    r["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text: {r}"))
}

async fn approvals_and_list_changed_as_documented() {
    // Nobody can be asked: refused, `approval: unavailable`.
    let s = setup();
    let log = s.log.to_str().unwrap();
    let mut g = Raw::spawn(gateway_command(&s.policy, &["--decision-log", log], &upstream()));
    g.initialize("2025-06-18", json!({})).await;
    let r = g.call(1, "needs", json!({})).await;
    assert!(text_of(&r).starts_with("Approval required by policy: a human must say."), "{r}");
    assert!(text_of(&r).contains("No approver is configured"), "{r}");
    g.close_stdin();
    g.wait_exit().await;
    let lines = log_lines_at_least(&s.log, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["decision"], "approve");
    assert_eq!(lines[0]["approval"], "unavailable", "{}", lines[0]);
    assert_eq!(lines[0]["outcome"], "not_dispatched");

    // A client that can be asked: a failed elicitation, then a declined one.
    let s = setup();
    let log = s.log.to_str().unwrap();
    let mut g = Raw::spawn(gateway_command(&s.policy, &["--decision-log", log], &upstream()));
    g.initialize("2025-06-18", json!({"elicitation": {}})).await;
    g.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "needs", "arguments": {}}}))
        .await;
    let ask = g.until(|m| m["method"] == "elicitation/create").await;
    g.send(
        json!({"jsonrpc": "2.0", "id": ask["id"], "error": {"code": -32603, "message": "no UI"}}),
    )
    .await;
    let r = g.response(json!(1)).await;
    assert!(text_of(&r).starts_with("Approval failed"), "{r}");
    g.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "needs", "arguments": {}}}))
        .await;
    let ask = g.until(|m| m["method"] == "elicitation/create").await;
    g.send(json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "decline"}})).await;
    let r = g.response(json!(2)).await;
    assert!(text_of(&r).starts_with("Approval declined"), "{r}");

    // The gateway's view of the tools follows the upstream's `list_changed`: `shaped`, listed
    // without an `outputSchema`, is refused with `structuredContent`; once the upstream gives
    // it one, without.
    let list = g.request(3, "tools/list", json!({})).await;
    assert!(list.to_string().contains("shaped"), "{list}");
    let r = g.call(4, "shaped", json!({})).await;
    assert_eq!(r["result"]["structuredContent"]["decision"], "deny", "{r}");
    let r = g.call(5, "swap", json!({})).await;
    assert_eq!(text_of(&r), "ran");
    let changed = g.until(|m| m["method"] == "notifications/tools/list_changed").await;
    assert!(changed.get("id").is_none(), "relayed to the client: {changed}");
    let deadline = std::time::Instant::now() + support::PATIENCE;
    let mut id = 6;
    loop {
        let r = g.call(id, "shaped", json!({})).await;
        assert_eq!(r["result"]["isError"], true, "{r}");
        if r["result"].get("structuredContent").is_none() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the gateway never re-listed the tools");
        id += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    g.close_stdin();
    g.wait_exit().await;

    let lines = log_lines_at_least(&s.log, 4).await;
    let needs: Vec<(&str, &str, Option<&str>)> = lines
        .iter()
        .filter(|l| l["tool"] == "needs")
        .map(|l| {
            (
                l["decision"].as_str().unwrap(),
                l["outcome"].as_str().unwrap(),
                l["approval"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        needs,
        vec![
            ("approve", "approval_requested", None),
            ("approve", "not_dispatched", Some("failed")),
            ("approve", "approval_requested", None),
            ("approve", "not_dispatched", Some("declined")),
        ],
        "{lines:?}"
    );
    assert!(lines.iter().filter(|l| l["tool"] == "needs").all(|l| l["upstream_ms"].is_null()));
}

/// Monitor mode: an `approve` is dispatched without asking the client (which could be asked),
/// a `deny` is dispatched too; every line says `"monitor": true` and what the policy decided.
/// (And `--decision-log PATH` appends to what the file holds.)
async fn monitor_mode_asks_nobody_and_dispatches_everything() {
    let s = setup();
    // The log is appended to.
    std::fs::write(&s.log, "{\"previous\": true}\n").unwrap();
    let log = s.log.to_str().unwrap();
    let args = ["--mode", "monitor", "--decision-log", log];
    let mut g = Raw::spawn(gateway_command(&s.policy, &args, &upstream()));
    g.initialize("2025-06-18", json!({"elicitation": {}})).await;
    let r = g.call(1, "needs", json!({})).await;
    assert_eq!(text_of(&r), "ran", "{r}");
    let r = g.call(2, "shaped", json!({})).await;
    assert_eq!(text_of(&r), "ran", "{r}");
    let r = g.call(3, "echo", json!({})).await;
    assert_eq!(text_of(&r), "ran", "{r}");
    assert!(
        g.queue.iter().all(|m| m["method"] != "elicitation/create"),
        "a human was asked: {:?}",
        g.queue
    );
    g.close_stdin();
    g.wait_exit().await;
    let lines = log_lines_at_least(&s.log, 4).await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0], json!({"previous": true}), "appended: {lines:?}");
    for (tool, decision) in [("needs", "approve"), ("shaped", "deny"), ("echo", "allow")] {
        let l = line_for(&lines, tool);
        assert_eq!(l["decision"], decision, "{l}");
        assert_eq!(l["monitor"], true, "{l}");
        assert_eq!(l["outcome"], "ok", "{l}");
    }
}

async fn the_upstream_timeout_cancels_upstream_and_spares_approval_waits() {
    let s = setup();
    let log = s.log.to_str().unwrap();
    let args = ["--upstream-timeout", "0.5", "--decision-log", log];
    let mut g = Raw::spawn(gateway_command(&s.policy, &args, &upstream()));
    g.initialize("2025-06-18", json!({"elicitation": {}})).await;
    let r = g.call(1, "hang", json!({})).await;
    assert_eq!(error_code(&r), -32603, "{r}");
    let note = g.until(|m| m["method"] == "notifications/message").await;
    assert_eq!(note["params"]["data"], json!({"cancelled": true, "matching": true}), "{note}");

    // A human deciding for longer than the timeout: the call still runs once approved.
    g.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "needs", "arguments": {}}}))
        .await;
    let ask = g.until(|m| m["method"] == "elicitation/create").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    g.send(json!({"jsonrpc": "2.0", "id": ask["id"],
        "result": {"action": "accept", "content": {"approve": true}}}))
        .await;
    let r = g.response(json!(2)).await;
    assert_eq!(text_of(&r), "ran", "{r}");
    g.close_stdin();
    g.wait_exit().await;
    let lines = log_lines_at_least(&s.log, 3).await;
    assert_eq!(line_for(&lines, "hang")["outcome"], "upstream_timeout", "{lines:?}");
    let needs: Vec<&Value> = lines.iter().filter(|l| l["tool"] == "needs").collect();
    assert_eq!(needs.last().unwrap()["approval"], "accepted", "{needs:?}");
    assert_eq!(needs.last().unwrap()["outcome"], "ok", "{needs:?}");
}

/// An upstream that outlives the end of its input and ignores SIGTERM: a shell that ignores
/// it (as do the processes it starts), runs the scripted upstream, then sleeps for ever.
fn stubborn_upstream() -> Vec<OsString> {
    let script = r#"trap "" TERM; "$0" scripted-upstream; while :; do sleep 1; done"#;
    vec!["sh".into(), "-c".into(), script.into(), std::env::current_exe().unwrap().into()]
}

/// Kills the process group when dropped: a failing test leaves no stubborn upstream behind
/// (it would hold the test's output open).
struct KillGroupOnDrop(u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if group_alive(self.0) {
            let pgid = nix::unistd::Pid::from_raw(self.0 as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::SIGKILL);
        }
    }
}

/// Whether a live (not zombie) process is in the process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { return false };
        let Some((_, rest)) = stat.rsplit_once(')') else { return false };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
    })
}

async fn a_client_that_leaves_takes_a_stubborn_upstream_with_it() {
    let s = setup();
    let mut g = Raw::spawn(gateway_command(&s.policy, &[], &stubborn_upstream()));
    g.initialize("2025-06-18", json!({})).await;
    let r = g.call(1, "echo", json!({})).await;
    assert_eq!(text_of(&r), "ran", "{r}");
    let kids = children_of(g.child.id().unwrap());
    assert_eq!(kids.len(), 1, "{kids:?}");
    // The upstream runs in a process group of its own, led by it.
    let pgid = kids[0];
    assert!(group_alive(pgid));
    let _cleanup = KillGroupOnDrop(pgid);
    g.close_stdin();
    let status = g.wait_exit().await;
    // The end of its input, then SIGTERM, were not enough: SIGKILL ended it.
    assert_eq!(status.code(), Some(128 + 9), "{status}");
    let deadline = std::time::Instant::now() + support::PATIENCE;
    while group_alive(pgid) {
        assert!(std::time::Instant::now() < deadline, "a process of the upstream was left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An accepted approval is evaluated again with its key: limits still apply (two calls asked
/// at once, one unit: the second accepted is limited); an accept without `approve: true` is
/// refused. Neither refused call reaches the upstream.
async fn an_accepted_approval_is_decided_again() {
    let s = setup();
    let log = s.log.to_str().unwrap();
    let mut g = Raw::spawn(gateway_command(&s.policy, &["--decision-log", log], &upstream()));
    g.initialize("2025-06-18", json!({"elicitation": {}})).await;
    for id in [1, 2] {
        g.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "needs_lim", "arguments": {"n": id}}}))
            .await;
    }
    let first = g.until(|m| m["method"] == "elicitation/create").await;
    let second = g.until(|m| m["method"] == "elicitation/create").await;
    for ask in [&first, &second] {
        g.send(json!({"jsonrpc": "2.0", "id": ask["id"],
            "result": {"action": "accept", "content": {"approve": true}}}))
            .await;
    }
    let a = g.response(json!(1)).await;
    let b = g.response(json!(2)).await;
    let mut texts = [text_of(&a).to_owned(), text_of(&b).to_owned()];
    texts.sort();
    assert_eq!(texts[1], "ran", "{a} {b}");
    assert!(texts[0].starts_with("Rate limited by policy"), "{a} {b}");

    // Accepted, but without `approve: true`.
    g.send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "needs", "arguments": {}}}))
        .await;
    let ask = g.until(|m| m["method"] == "elicitation/create").await;
    g.send(json!({"jsonrpc": "2.0", "id": ask["id"],
        "result": {"action": "accept", "content": {"approve": false}}}))
        .await;
    let r = g.response(json!(3)).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text_of(&r).starts_with("Approval declined"), "{r}");
    g.close_stdin();
    g.wait_exit().await;
    let lines = log_lines_at_least(&s.log, 6).await;
    let ran = lines.iter().filter(|l| l["outcome"] == "ok").count();
    assert_eq!(ran, 1, "one call reached the upstream: {lines:?}");
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("scripted-upstream") {
        scripted_upstream();
        return;
    }
    let tests: [runner::Test; 10] = [
        ("the_decision_log_says_what_became_of_each_call", || {
            Box::pin(the_decision_log_says_what_became_of_each_call())
        }),
        ("what_cannot_start_has_its_exit_status_and_reason", || {
            Box::pin(what_cannot_start_has_its_exit_status_and_reason())
        }),
        ("sigint_and_sigterm_end_the_gateway_and_take_the_upstream_with_it", || {
            Box::pin(sigint_and_sigterm_end_the_gateway_and_take_the_upstream_with_it())
        }),
        ("the_upstream_runs_where_the_gateway_runs_and_policy_poll_0_waits_for_sighup", || {
            Box::pin(the_upstream_runs_where_the_gateway_runs_and_policy_poll_0_waits_for_sighup())
        }),
        ("approvals_and_list_changed_as_documented", || {
            Box::pin(approvals_and_list_changed_as_documented())
        }),
        ("monitor_mode_asks_nobody_and_dispatches_everything", || {
            Box::pin(monitor_mode_asks_nobody_and_dispatches_everything())
        }),
        ("the_upstream_timeout_cancels_upstream_and_spares_approval_waits", || {
            Box::pin(the_upstream_timeout_cancels_upstream_and_spares_approval_waits())
        }),
        ("a_client_that_leaves_takes_a_stubborn_upstream_with_it", || {
            Box::pin(a_client_that_leaves_takes_a_stubborn_upstream_with_it())
        }),
        ("an_accepted_approval_is_decided_again", || {
            Box::pin(an_accepted_approval_is_decided_again())
        }),
        ("signals_are_handled_while_a_client_pipelines_calls_without_pause", || {
            Box::pin(signals_are_handled_while_a_client_pipelines_calls_without_pause())
        }),
    ];
    runner::run(&tests, DEADLINE);
}
